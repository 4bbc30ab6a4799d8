"""What happened to mail, as typed events any number of subscribers can follow."""

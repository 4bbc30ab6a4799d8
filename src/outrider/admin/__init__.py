"""The operator's console: ``outrider show``, ``list``, ``retry``, ``delete`` and friends,
talking to the running daemon over its control socket."""

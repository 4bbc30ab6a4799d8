"""The soft open-files limit the daemon asks for at start-up."""

from __future__ import annotations

import resource

from outrider.fd_limit import wanted_soft_limit

INF = resource.RLIM_INFINITY


def test_soft_limit_is_raised_to_the_hard_limit() -> None:
    assert wanted_soft_limit(1024, 524288, 1048576) == 524288


def test_unlimited_hard_limit_means_the_kernel_ceiling() -> None:
    assert wanted_soft_limit(1024, INF, 1048576) == 1048576


def test_hard_limit_above_the_kernel_ceiling_is_capped() -> None:
    assert wanted_soft_limit(1024, 4194304, 1048576) == 1048576


def test_never_lowered() -> None:
    assert wanted_soft_limit(65536, 65536, 1048576) == 65536
    assert wanted_soft_limit(INF, INF, 1048576) == INF

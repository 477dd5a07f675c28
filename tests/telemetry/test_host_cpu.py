import os

import pytest

from verl_async_vla.telemetry import host_cpu

HZ = os.sysconf("SC_CLK_TCK")


def _stat(tmp_path, name, user, nice, system, idle, iowait, irq, softirq, steal):
    path = tmp_path / name
    ticks = [round(x * HZ) for x in (user, nice, system, idle, iowait, irq, softirq, steal)]
    path.write_text("cpu  " + " ".join(map(str, ticks)) + " 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
    return path


def test_busy_cores_from_two_readings(tmp_path, monkeypatch):
    a = host_cpu.read(_stat(tmp_path, "a", 10, 5, 5, 100, 0, 0, 0, 0))
    b = host_cpu.read(_stat(tmp_path, "b", 22, 7, 9, 104, 2, 1, 1, 0))  # +20 s busy, +6 s idle over 13 s
    assert a is not None and b is not None
    a = host_cpu.CpuTimes(0.0, a.busy, a.idle, a.steal)
    b = host_cpu.CpuTimes(13.0, b.busy, b.idle, b.steal)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    u = host_cpu.usage(a, b, env_steps=4000)
    assert u["busy_cores"] == pytest.approx(20 / 13)
    assert u["busy_fraction"] == pytest.approx(20 / 26)
    assert u["core_ms_per_env_step"] == pytest.approx(5.0)  # 20 core-s / 4000 steps
    assert u["busy_core_s"] == pytest.approx(20.0)


def test_steal_is_neither_busy_nor_idle(tmp_path):
    a = host_cpu.read(_stat(tmp_path, "a", 1, 0, 0, 1, 0, 0, 0, 0))
    b = host_cpu.read(_stat(tmp_path, "b", 2, 0, 0, 2, 0, 0, 0, 2))
    assert b.busy - a.busy == pytest.approx(1) and b.idle - a.idle == pytest.approx(1)
    assert b.steal - a.steal == pytest.approx(2)


def test_nothing_is_reported_without_proc_stat(tmp_path):
    assert host_cpu.read(tmp_path / "missing") is None
    (tmp_path / "empty").write_text("")
    assert host_cpu.read(tmp_path / "empty") is None
    assert host_cpu.usage(None, None, 100) is None

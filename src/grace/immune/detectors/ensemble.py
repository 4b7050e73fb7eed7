"""The default detector: robust online statistics at several time scales, one alarm per event.

Three channels look at each sample, each self-normalised by a slow, winsorised running
mean of its own magnitude (so a channel's "typical" value is 1 on any series, whatever its
units, noise level or autocorrelation):

* **spike** — the sample against a medium-term EWMA baseline: spikes, dips, the first
  samples of a level shift (until its slow scale has settled, the scale is the smaller of
  the slow one and 1.5 times a medium-term mean deviation, so a start-up transient is
  forgotten within a few dozen samples);
* **shift** — a fast EWMA against a slow one: sustained level shifts and drifts too small
  to show in any single sample;
* **variance** — the log ratio of fast to slow mean absolute step size: bursts of noise,
  and flatlines (a stuck sensor or a stopped process, whose steps collapse to zero).

The evidence is the largest channel value in units of its alarm level. Suppression keeps
one alarm per event: a sample scores only if its evidence tops the decaying upper envelope
of recent evidence *and* is at least ``rise`` times the last reported level (also
decaying), so a sustained or slowly growing anomaly reports at its onset and at a few
doublings, not on every sample (NAB rewards the earliest detection in a window and
charges every false positive outside one). ``suppress=False`` gives the raw per-sample
evidence instead.

Updates are winsorised (a sample moves a baseline or a scale by at most ``clip`` typical
deviations; the smooth shift and variance scales by at most 2), so one anomaly does not
blind the detector to the next and a drift is reported before it is learnt as normal.
Averages start as plain means and turn exponential once their memory is filled. State:
about twenty-five floats, whatever the length of the series. No look-ahead.

Score: ``e² / (e² + 1)`` of the (suppressed) evidence ``e``: 0.5 at the alarm level.
"""

from __future__ import annotations

import math
from typing import ClassVar

from grace.errors import MonitorError
from grace.immune.detectors._base import LIMIT, Timestamp, check_param, check_value, to_seconds

__all__ = ["EnsembleDetector"]

_INF = math.inf
_log = math.log
_E_MAX = 20.0
"""Evidence is capped here (score 0.9975): beyond it "how anomalous" carries no more
information, and a capped peak decays back to normal within a few half-lives."""
_FAST_SCALE = 1.5
_SCALE_CLIP = 2.0
"""The shift and variance channels are smooth, so their scales are winsorised harder: a
drift must not teach the detector that drifting is normal before it is reported."""
_LOG_RATIO_MAX = math.log(30.0)
"""Bound on the variance channel's log ratio: a flatline's ratio falls geometrically, and
unbounded evidence would keep setting new peaks (fresh alarms) while the flatline lasts."""


def _alpha(span: float) -> float:
    return 2.0 / (span + 1.0)


class _Channels:
    """Spike, shift and variance statistics of one input stream (see the module doc)."""

    __slots__ = (
        "a_fast",
        "a_mid",
        "a_scale",
        "a_slow",
        "a_vfast",
        "clip",
        "k_shift",
        "k_spike",
        "k_var",
        "m_fast",
        "m_mid",
        "m_slow",
        "n",
        "prev",
        "s_fast",
        "s_shift",
        "s_spike",
        "s_var",
        "v_fast",
        "v_slow",
    )

    def __init__(
        self,
        spans: tuple[float, float, float, float],
        levels: tuple[float, float, float],
        clip: float,
    ) -> None:
        fast, mid, slow, scale = spans
        self.a_fast, self.a_mid, self.a_slow = _alpha(fast), _alpha(mid), _alpha(slow)
        self.a_vfast = _alpha(max(fast, 10.0))
        self.a_scale = _alpha(scale)
        self.k_spike, self.k_shift, self.k_var = (1.0 / k for k in levels)
        self.clip = clip
        self.n = 0
        self.prev = self.m_fast = self.m_mid = self.m_slow = 0.0
        self.v_fast = self.v_slow = 0.0
        self.s_spike = self.s_shift = self.s_var = self.s_fast = 0.0

    def evidence(self, x: float) -> float:
        """Take ``x``; return the largest channel value in alarm-level units."""
        n = self.n + 1
        self.n = n
        if n == 1:
            self.prev = self.m_fast = self.m_mid = self.m_slow = x
            return 0.0
        clip = self.clip
        a_sc = self.a_scale if self.a_scale * n >= 1.0 else 1.0 / n

        # spike: the sample against the medium baseline of the samples before it. Its scale
        # is the smaller of a slow and (a multiple of) a faster mean deviation: the slow one
        # ignores anomalies, the fast one forgets a start-up transient within ~mid samples
        m_mid = self.m_mid
        r = x - m_mid
        dev = r if r >= 0.0 else -r
        s_slow = self.s_spike
        s_fast = self.s_fast
        s = s_slow
        if a_sc > self.a_scale and s_fast * _FAST_SCALE < s:
            # only while the slow scale is still young: later, a quiet spell would shrink
            # the fast scale and make ordinary noise after it look anomalous
            s = s_fast * _FAST_SCALE
        if s > 0.0:
            z = dev / s
            bound = clip * s
        else:
            z = 0.0 if dev == 0.0 else _INF
            bound = dev
        e = z * self.k_spike
        # winsorised: one wild sample moves baselines and scales by a bounded amount
        a = self.a_mid if self.a_mid * n >= 1.0 else 1.0 / n
        if dev <= bound:
            xw = x
            self.s_spike = s_slow + a_sc * (dev - s_slow)
            self.s_fast = s_fast + a * (dev - s_fast)
        else:
            xw = m_mid + bound if r > 0.0 else m_mid - bound
            self.s_spike = s_slow + a_sc * (bound - s_slow)
            self.s_fast = s_fast + a * (bound - s_fast)
        self.m_mid = m_mid + a * (xw - m_mid)

        # shift: fast against slow mean, both fed the winsorised sample
        a = self.a_fast if self.a_fast * n >= 1.0 else 1.0 / n
        m_fast = self.m_fast + a * (xw - self.m_fast)
        self.m_fast = m_fast
        m_slow = self.m_slow
        r = m_fast - m_slow
        dev = r if r >= 0.0 else -r
        s = self.s_shift
        if s > 0.0:
            z = dev / s
            bound = _SCALE_CLIP * s
        else:
            z = 0.0 if dev == 0.0 else _INF
            bound = dev
        z *= self.k_shift
        if z > e:
            e = z
        self.s_shift = s + a_sc * ((dev if dev <= bound else bound) - s)
        a = self.a_slow if self.a_slow * n >= 1.0 else 1.0 / n
        self.m_slow = m_slow + a * (xw - m_slow)

        # variance: log ratio of fast to slow mean absolute step
        step = x - self.prev
        if step < 0.0:
            step = -step
        self.prev = x
        v_slow = self.v_slow
        bound = clip * v_slow if v_slow > 0.0 else step
        if step > bound:
            step = bound
        a = self.a_vfast if self.a_vfast * n >= 1.0 else 1.0 / n
        v_fast = self.v_fast + a * (step - self.v_fast)
        self.v_fast = v_fast
        a = self.a_slow if self.a_slow * n >= 1.0 else 1.0 / n
        self.v_slow = v_slow + a * (step - v_slow)
        # the floor keeps a perfectly flat history from dividing zero by zero
        eps = 1e-9 * ((m_slow if m_slow >= 0.0 else -m_slow) + self.s_spike) + 1e-300
        r = _log((v_fast + eps) / (v_slow + eps))
        if r < -_LOG_RATIO_MAX:
            r = -_LOG_RATIO_MAX
        elif r > _LOG_RATIO_MAX:
            r = _LOG_RATIO_MAX
        dev = r if r >= 0.0 else -r
        s = self.s_var
        if s > 0.0:
            z = dev / s
            bound = _SCALE_CLIP * s
        else:
            z = 0.0 if dev == 0.0 else _INF
            bound = dev
        z *= self.k_var
        if z > e:
            e = z
        self.s_var = s + a_sc * ((dev if dev <= bound else bound) - s)
        return e


class EnsembleDetector:
    """Spike, shift and variance channels with self-normalised scales, one alarm per event."""

    name: ClassVar[str] = "ensemble"

    __slots__ = (
        "_channels",
        "_count",
        "_decay",
        "_emitted",
        "_last_t",
        "_peak",
        "_rise",
        "_suppress",
        "_warmup",
    )

    def __init__(
        self,
        *,
        fast: float = 6.0,
        mid: float = 40.0,
        slow: float = 400.0,
        scale_span: float = 1000.0,
        spike_level: float = 6.0,
        shift_level: float = 6.0,
        variance_level: float = 6.0,
        clip: float = 4.0,
        suppress: bool = True,
        rise: float = 2.0,
        half_life: float = 150.0,
        warmup: int = 100,
    ) -> None:
        """Spans are in samples. ``*_level``: the self-normalised channel value that scores
        0.5. ``clip``: winsorising bound in typical deviations. ``half_life``: samples for
        the suppression envelope to halve; ``rise``: factor by which evidence must top the
        last reported level. ``warmup``: samples scored 0."""
        fast = check_param("fast", fast, 1.0, 1e9)
        mid = check_param("mid", mid, fast, 1e9)
        slow = check_param("slow", slow, mid, 1e9)
        spans = (fast, mid, slow, check_param("scale_span", scale_span, 2.0, 1e9))
        levels = (
            check_param("spike_level", spike_level, 1e-3, 1e6),
            check_param("shift_level", shift_level, 1e-3, 1e6),
            check_param("variance_level", variance_level, 1e-3, 1e6),
        )
        clip = check_param("clip", clip, 1.0, 1e6)
        self._channels = _Channels(spans, levels, clip)
        if not isinstance(suppress, bool):
            raise MonitorError(f"detector parameter suppress must be a bool, not {suppress!r}")
        self._suppress = suppress
        self._rise = check_param("rise", rise, 1.0, 1e6)
        self._decay = 0.5 ** (1.0 / check_param("half_life", half_life, 1.0, 1e9))
        self._warmup = int(check_param("warmup", warmup, 2, 1e9))
        self._count = 0
        self._last_t = -_INF
        self._peak = 0.0
        self._emitted = 0.0

    @property
    def observations(self) -> int:
        """Samples accepted so far."""
        return self._count

    def observe(self, timestamp: Timestamp, value: float) -> float:
        """Score ``value`` against the samples before it; see the module docstring."""
        last = self._last_t
        t = (
            timestamp
            if type(timestamp) is float and last <= timestamp < _INF
            else to_seconds(timestamp, last)
        )
        x = value if type(value) is float and -LIMIT <= value <= LIMIT else check_value(value)
        self._last_t = t
        self._count += 1

        e = self._channels.evidence(x)
        if self._count <= self._warmup:
            return 0.0
        if e > _E_MAX:  # also turns an infinite z (a first move after a flat start) finite
            e = _E_MAX
        if self._suppress:
            peak = self._peak
            if e > peak:
                self._peak = e
                if e < self._emitted * self._rise:
                    e = 0.0
                else:
                    self._emitted = e
            else:
                # the envelope never falls below the current evidence, so an anomaly that
                # holds or fades stays quiet
                peak *= self._decay
                self._peak = e if e > peak else peak
                e = 0.0
            self._emitted *= self._decay
        e *= e
        return e / (e + 1.0)

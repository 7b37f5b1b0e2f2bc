"""``vsr.job.live_clock.SourceClock``: one output clock from start to end, whatever the live source's clock
does (a sender restarted within the time-out, a discontinuity, a jump ahead), with audio and video each
followed on their own, since they come interleaved with a lag between them. Wall time is given (``now``)."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from vsr.job.live_clock import JUMP_AHEAD_S, SourceClock

F = Fraction
FRAME = F(1, 25)
AUDIO = F(1024, 48000)


def _interleaved(start: Fraction, seconds: float, lag: Fraction = F(3, 10)) -> list[tuple[str, Fraction]]:
    """A live MPEG-TS source's items from ``start`` on its clock: 25 fps video and AAC audio, the audio
    coming ``lag`` behind the pictures (as a muxer's interleaving does), in arrival order."""
    video = [("video", start + i * FRAME) for i in range(round(seconds * 25))]
    audio = [("audio", start - lag + i * AUDIO) for i in range(round(seconds * 48000 / 1024))]
    return sorted(video + audio, key=lambda item: item[1] + (lag if item[0] == "audio" else 0))


def _run(clock: SourceClock, items: list[tuple[str, Fraction]], wall0: float = 0.0,
         source0: Fraction | None = None) -> list[tuple[str, Fraction]]:
    """Each item's output time; items arrive at real time on their source clock from ``wall0``."""
    source0 = items[0][1] if source0 is None else source0
    out = []
    for kind, time_ in items:
        now = wall0 + max(float(time_ - source0), 0.0)
        out.append((kind, time_ + clock.shift(time_, kind, now=now)))
    return out


def _times(out: list[tuple[str, Fraction]], kind: str) -> list[Fraction]:
    return [t for k, t in out if k == kind]


def test_a_steady_source_keeps_its_own_spacing_from_0() -> None:
    clock = SourceClock()
    out = _run(clock, _interleaved(F(14, 10), 2.0))
    video = _times(out, "video")
    assert video[0] == 0 and all(b - a == FRAME for a, b in zip(video, video[1:]))
    assert clock.jumps() == []


def test_a_sender_restarted_at_once_goes_on_from_where_the_output_was() -> None:
    """The first sender ran 5 s (its clock 1.4 to 6.4 s); the second starts at 1.4 s again, 0.2 s later."""
    clock = SourceClock()
    first = _run(clock, _interleaved(F(14, 10), 5.0))
    second = _run(clock, _interleaved(F(14, 10), 3.0), wall0=5.2)
    jumps = clock.jumps()
    assert len(jumps) == 1 and jumps[0].seconds < -3.5  # said once, though both kinds jumped
    for kind in ("video", "audio"):
        before, after = _times(first, kind), _times(second, kind)
        times = before + after
        assert all(b > a for a, b in zip(times, times[1:])), kind  # never back, never twice the same time
    video_before, video_after = _times(first, "video"), _times(second, "video")
    assert 0 < video_after[0] - video_before[-1] <= F(3, 10)  # the 0.2 s away, not the 5 s jump
    # the audio still follows its pictures by the same lag as before
    assert abs(_times(second, "audio")[0] - (video_after[0] - F(3, 10))) <= F(1, 10)


def test_audio_of_the_old_clock_still_on_its_way_keeps_the_old_clock() -> None:
    """When the new sender's first picture comes, audio of the old one can still follow (the lag): it
    belongs before the jump, not 5 s after it."""
    clock = SourceClock()
    _run(clock, [("video", F(5)), ("audio", F(5)), ("video", F(5) + FRAME)], wall0=0.0)
    new = F(14, 10) + clock.shift(F(14, 10), "video", now=0.3)
    straggler = F(51, 10) + clock.shift(F(51, 10), "audio", now=0.31)
    assert straggler == F(1, 10) < new  # on the old clock, where it was
    assert len(clock.jumps()) == 1


def test_a_jump_ahead_far_beyond_the_wall_time_is_closed_and_a_pause_is_kept() -> None:
    clock = SourceClock()
    clock.shift(F(10), now=0.0)
    clock.shift(F(11), now=1.0)  # a 1 s step in 1 s
    assert F(20) + clock.shift(F(20), now=10.0) == 10  # a 9 s pause of the sender, its clock running: kept
    assert clock.jumps() == []
    later = F(20 + 3600) + clock.shift(F(20 + 3600), now=10.04)  # an hour ahead in 0.04 s: a jump
    assert F(10) < later <= F(10) + F(1, 10)
    assert [round(j.seconds) for j in clock.jumps()] == [3600]
    assert JUMP_AHEAD_S < 3600


def test_a_recording_keeps_its_own_timestamps_gaps_and_all() -> None:
    clock = SourceClock(follow_jumps=False)
    assert clock.shift(F(0), now=0.0) == 0 and clock.shift(F(100), now=0.01) == 0
    assert clock.jumps() == []


def test_after_a_reconnect_both_kinds_go_on_from_the_newest_output_plus_the_gap() -> None:
    clock = SourceClock()
    _run(clock, _interleaved(F(0), 2.0))
    clock.reconnected()
    out = _run(clock, _interleaved(F(1000), 1.0), wall0=3.5, source0=F(1000))
    video, audio = _times(out, "video"), _times(out, "audio")
    assert F(3) <= video[0] <= F(36, 10) and abs(audio[0] - (video[0] - F(3, 10))) <= F(1, 10)
    assert clock.jumps() == []  # a reconnect is said by the stream itself


@settings(max_examples=60, deadline=None)
@given(starts=st.lists(st.integers(0, 40 * 25), min_size=1, max_size=4),
       lengths=st.lists(st.integers(2, 6), min_size=4, max_size=4),
       lag=st.integers(0, 9))
def test_whatever_the_source_clock_does_each_kind_only_goes_forward(starts: list[int], lengths: list[int],
                                                                     lag: int) -> None:
    """Senders one after the other, each with its clock starting anywhere (0 to 40 s), each sending 2 to 6 s
    with the audio 0 to 0.9 s behind: the output's video and audio each only go forward, and where one
    sender followed another the output has no hole but the sender's own step ahead (up to the jump limit)."""
    clock = SourceClock()
    out: list[tuple[str, Fraction]] = []
    wall = 0.0
    for start, seconds in zip(starts, lengths):
        items = _interleaved(F(start, 25), seconds, lag=F(lag, 10))
        out += _run(clock, items, wall0=wall)
        wall += seconds
    for kind in ("video", "audio"):
        times = _times(out, kind)
        assert all(b > a for a, b in zip(times, times[1:])), kind
    video = _times(out, "video")
    assert max(b - a for a, b in zip(video, video[1:])) <= JUMP_AHEAD_S + 1

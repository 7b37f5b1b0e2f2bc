"""Decoding times of encoded video packets: one schedule for joined segments, and libx265's repaired.

``decoding_times`` gives packets in decode order the smallest B-frame delay that decodes every
picture no later than it is shown. ``flush`` drains an encoder at the end of a stream and gives a
very short libx265 stream such decoding times: libx265 learns its B-frame delay's length from the
stream's third picture (x265 ``Encoder::encode`` sets ``m_bframeDelayTime`` when picture number
``bframe-delay`` arrives), so the packets of a stream of one or two pictures get decoding times
computed from an uninitialised field: ``3280168836610928007`` for the picture shown at 0 in one
process, ``0`` in another. Muxers refuse such a packet (``Invalid argument ... returned 22``) or
store nonsense, depending on the garbage. All packets of such a stream come out of the flush.
"""

from __future__ import annotations

from collections.abc import Sequence

import av

__all__ = ["X265_SHORT_STREAM", "decoding_times", "flush"]

X265_SHORT_STREAM = 2
"""libx265 streams of at most this many pictures have garbage decoding times (its B-frame delay is
at most 2 pictures: 2 with b-pyramid, the default, else 1; it is set by the delay's last picture)."""


def decoding_times(pts: Sequence[int]) -> list[int]:
    """Decoding times for packets whose presentation times are ``pts`` (in decode order, distinct).

    Each segment's encoder chose its own B-frame delay (a two-frame segment may have none), so the
    logged decoding times of consecutive segments can overlap. The joined stream gets one delay
    ``D`` instead, the smallest that keeps every packet decoded no later than it is shown: packet
    ``i`` is decoded at the ``(i - D)``-th presentation time (the ``D`` first ones just before the
    first picture, one smallest gap apart). Decoding times only order the packets (pictures are
    shown by ``pts``), so this changes nothing that is seen; durations between decoding times are
    the real frame durations, as MP4's sample table wants.
    """
    order = sorted(pts)
    rank = {value: index for index, value in enumerate(order)}
    delay = max([0] + [i - rank[value] for i, value in enumerate(pts)])
    gaps = [b - a for a, b in zip(order, order[1:])]
    step = min(gaps) if gaps else 1
    return [order[i - delay] if i >= delay else order[0] - (delay - i) * step for i in range(len(pts))]


def flush(stream: av.video.stream.VideoStream, frames: int) -> list[av.Packet]:
    """The packets ``stream``'s encoder still holds at the end of a stream of ``frames`` pictures
    (``stream.encode(None)``), with decoding times a muxer accepts (see the module doc)."""
    packets = list(stream.encode(None))
    if stream.codec_context.name == "libx265" and frames <= X265_SHORT_STREAM and packets:
        for packet, dts in zip(packets, decoding_times([int(p.pts) for p in packets]), strict=True):
            packet.dts = dts
    return packets

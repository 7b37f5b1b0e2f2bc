"""`vsr upscale` end to end with the bicubic engine: plan first, report last, exact output, nothing left behind."""

from __future__ import annotations

import logging
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import media
from job_support import decode, files_under, isolate_environment
from media_factory import cut_with_an_edit_list, make_video
from vsr.model.bicubic import BicubicUpscaler
from vsr.cli import main

RATE = Fraction(30000, 1001)


def _no_png(folder: Path) -> None:
    assert [p for p in files_under(folder) if p.suffix.lower() == ".png"] == [], "a PNG was written"


def test_upscale_a_generated_clip(tmp_path: Path, monkeypatch, capsys) -> None:
    isolate_environment(monkeypatch, tmp_path, STREAM_DIFFVSR_ENGINE="bicubic")
    src = make_video(tmp_path / "in.mkv", 40, 24, RATE, 20, audio="aac", subtitles="srt")
    out = tmp_path / "out.mkv"
    code = main(["upscale", str(src), "-o", str(out), "--seed", "11", "--codec", "ffv1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    stdout = captured.out.splitlines()
    assert stdout[0].startswith("Input:    in.mkv: 40x24") and any(l.startswith("Estimate:") for l in stdout)
    assert "Track:    audio #1: aac, copied unchanged" in captured.out
    # Bicubic draws no noise and has no temporal context: no seed to repeat, no scene-cut lines.
    (done,) = [line for line in stdout if line.startswith("Done:")]
    assert done.startswith("Done:     20 frames in ") and "frames/s" in done
    assert "seed" not in captured.out and "Scenes:" not in captured.out and "scene cut" not in captured.out
    assert stdout[-1].startswith("  [ok] subtitles") and "out.mkv: all 11 checks passed." in captured.out
    assert "upscaling" in captured.err and "100%" in captured.err  # the tqdm bar
    info = media.probe(out)
    assert (info.video.width, info.video.height) == (160, 96) and info.video.frame_count == 20
    assert info.video.avg_rate == RATE
    assert [a.codec for a in info.audio] == ["aac"] and [s.codec for s in info.subtitles] == ["subrip"]
    engine = BicubicUpscaler()
    assert all(np.array_equal(hi.rgb, engine.process(lo.rgb)) for lo, hi in zip(decode(src), decode(out), strict=True))
    assert files_under(tmp_path / "tmp") == []
    _no_png(tmp_path)


def test_an_existing_output_needs_overwrite(tmp_path: Path, monkeypatch, capsys) -> None:
    isolate_environment(monkeypatch, tmp_path, STREAM_DIFFVSR_ENGINE="bicubic")
    src = make_video(tmp_path / "in.mp4", 32, 24, 25, 4, audio=None)
    out = tmp_path / "out.mp4"
    out.write_bytes(b"keep me")
    assert main(["upscale", str(src), "-o", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"vsr: error: {out} already exists. Pass --overwrite to replace it, or choose another name.")
    assert out.read_bytes() == b"keep me"
    assert main(["upscale", str(src), "-o", str(out), "--overwrite", "--preset", "ultrafast"]) == 0
    assert media.probe(out).video.width == 128


def test_an_output_folder_gets_the_file_named_as_vsr_batch_names_it(tmp_path: Path, monkeypatch, capsys) -> None:
    """`-o FOLDER` (as with cp) writes FOLDER/<name>_4x<suffix>. It said "FOLDER already exists. Pass
    --overwrite", and with --overwrite failed on ": a suffix-less file cannot hold h264 video"."""
    isolate_environment(monkeypatch, tmp_path, STREAM_DIFFVSR_ENGINE="bicubic")
    src = make_video(tmp_path / "clip.mkv", 32, 24, 25, 4, audio=None)
    folder = tmp_path / "outs"
    folder.mkdir()
    assert main(["upscale", str(src), "-o", str(folder), "--preset", "ultrafast"]) == 0, capsys.readouterr().err
    assert [p.name for p in folder.iterdir()] == ["clip_4x.mp4"]
    assert media.probe(folder / "clip_4x.mp4").video.frame_count == 4
    assert "clip_4x.mp4: all" in capsys.readouterr().out
    # again: the file in the folder is what already exists, and --overwrite replaces it
    assert main(["upscale", str(src), "-o", f"{folder}/"]) == 2
    assert capsys.readouterr().err.strip() == (f"vsr: error: {folder / 'clip_4x.mp4'} already exists. Pass "
                                               "--overwrite to replace it, or choose another name.")
    assert main(["upscale", str(src), "-o", str(folder), "--overwrite", "--codec", "ffv1"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["clip_4x.mkv", "clip_4x.mp4"]  # the codec's container


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_a_clip_cut_with_an_edit_list_upscales_its_shown_frames_with_audio_in_sync(tmp_path: Path, monkeypatch,
                                                                                   capsys, suffix: str) -> None:
    """`ffmpeg -ss 1 -i in.mp4 -c copy cut.mp4` (and many phones' and editors' files): the MP4's edit list
    hides the packets before the cut. They were counted as frames (100 for 75 shown) and the job failed its
    verification ("video duration: 3.000 s, expected 4.000 s"); into MKV, which has no edit list, the
    hidden second of audio was copied too. Now the 75 shown frames come out, and the audio from the cut."""
    isolate_environment(monkeypatch, tmp_path, STREAM_DIFFVSR_ENGINE="bicubic")
    src = make_video(tmp_path / "src.mp4", 32, 24, Fraction(25), 100, audio="aac", gop=50)
    cut = cut_with_an_edit_list(src, tmp_path / "cut.mp4")
    out = tmp_path / f"out{suffix}"
    assert main(["upscale", str(cut), "-o", str(out), "--preset", "ultrafast"]) == 0, capsys.readouterr().err
    info = media.probe(out)
    assert info.video.frame_count == 75 and info.video.duration == 3
    assert abs(info.audio[0].start_time - info.video.start_time) <= Fraction(1, 25)
    assert abs(info.audio[0].duration - 3) <= Fraction(1, 20)
    shown, made = decode(cut), decode(out)
    assert len(shown) == 75 and [f.pts - made[0].pts for f in made] == [f.pts - shown[0].pts for f in shown]


@pytest.mark.parametrize("rate", [8000, 22050])
def test_audio_at_a_low_sample_rate_encoded_to_aac_stays_in_sync(tmp_path: Path, monkeypatch, capsys,
                                                                rate: int) -> None:
    """PCM at 8 or 22.05 kHz (a phone, an old AVI) is encoded to AAC for MP4. The encoder's priming (1024
    samples: 128 ms at 8 kHz, more than a frame) was counted as the audio's start, and the job failed its
    verification ("audio starts -128.0 ms from the video"); the MP4's edit list hides it from players."""
    isolate_environment(monkeypatch, tmp_path, STREAM_DIFFVSR_ENGINE="bicubic")
    src = make_video(tmp_path / "in.mkv", 32, 24, 30, 30, audio="pcm", sample_rate=rate, channels=1)
    out = tmp_path / "out.mp4"
    assert main(["upscale", str(src), "-o", str(out), "--preset", "ultrafast"]) == 0, capsys.readouterr().err
    info = media.probe(out)
    assert info.audio[0].codec == "aac" and info.audio[0].sample_rate == rate
    assert abs(info.audio[0].start_time - info.video.start_time) <= Fraction(1, 1000)


def _wmv(path: Path, seconds: int = 2) -> Path:
    """An old Windows Media file: WMV2 video and WMA (wmav2) audio at 22.05 kHz in ASF, whose decoder
    gives its first sound only after two packets."""
    import av

    from media_factory import pattern, tone

    with av.open(str(path), "w", format="asf") as out:
        video = out.add_stream("wmv2", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = out.add_stream("wmav2", rate=22050)
        audio.codec_context.layout, audio.codec_context.bit_rate = "mono", 64000
        for index in range(25 * seconds):
            frame = av.VideoFrame.from_ndarray(pattern(64, 48, index), format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, 25)
            out.mux(video.encode(frame))
        samples = tone(22050, 0, 22050 * seconds, 1).astype(np.float32)
        sound = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples.reshape(1, -1)), format="fltp", layout="mono")
        sound.sample_rate, sound.pts, sound.time_base = 22050, 0, Fraction(1, 22050)
        out.mux(audio.encode(sound))
        out.mux(video.encode(None))
        out.mux(audio.encode(None))
    return path


def _sound_onset_after_first_picture(path: Path) -> float:
    """Seconds from the first picture to the first audible sample (an encoder's priming is silence)."""
    import av

    with av.open(str(path)) as container:
        picture = next(container.decode(video=0))
    with av.open(str(path)) as container:
        for sound in container.decode(audio=0):
            loud = np.flatnonzero(np.abs(sound.to_ndarray()).max(axis=0) > 0.05)
            if loud.size:
                onset = float(sound.pts * sound.time_base) + loud[0] / sound.sample_rate
                return onset - float(picture.pts * picture.time_base)
    raise AssertionError(f"{path}: no sound")


def test_a_windows_media_file_with_wma_audio_upscales_in_sync(tmp_path: Path, monkeypatch, capsys) -> None:
    """WMA is encoded to AAC for MP4. Its decoder gives sound only from the third packet on, so the
    transcoded audio starts there, as it does in any player; the verification expected the first packet's
    time and failed the job ("audio starts -1.0 ms from the video, the source -46.0 ms")."""
    isolate_environment(monkeypatch, tmp_path, STREAM_DIFFVSR_ENGINE="bicubic")
    src = _wmv(tmp_path / "old.wmv")
    out = tmp_path / "out.mp4"
    assert main(["upscale", str(src), "-o", str(out), "--preset", "ultrafast"]) == 0, capsys.readouterr().err
    assert "wmav2 -> aac, transcoded" in capsys.readouterr().out
    assert abs(_sound_onset_after_first_picture(out) - _sound_onset_after_first_picture(src)) <= 1 / 25


def _with_a_cover_picture_first(src: Path, dest: Path, *, attached: bool) -> Path:
    """``src`` with a one-picture JPEG video stream in front of its own (cover art; ``attached``: marked as
    such, as MP4 taggers do; else unmarked)."""
    import av

    with av.open(str(src)) as source, av.open(str(dest), "w") as out:
        cover = out.add_stream("mjpeg", rate=1)
        cover.width, cover.height, cover.pix_fmt = 40, 40, "yuvj420p"
        if attached:
            cover.disposition = av.stream.Disposition.attached_pic
        streams = {s.index: out.add_stream_from_template(s) for s in source.streams}
        picture = av.VideoFrame.from_ndarray(np.full((40, 40, 3), 200, np.uint8), format="rgb24")
        picture.pts, picture.time_base = 0, Fraction(1)
        for packet in cover.encode(picture) + cover.encode(None):
            out.mux(packet)
        for packet in source.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    return dest


@pytest.mark.parametrize("suffix, attached", [(".mkv", False), (".mp4", True)], ids=["unmarked", "attached_pic"])
def test_a_cover_picture_before_the_video_is_not_taken_for_the_video(tmp_path: Path, monkeypatch, capsys,
                                                                    suffix: str, attached: bool) -> None:
    """A file whose first video stream is a cover picture: its one frame was upscaled and "verified" (0.04 s
    of picture with 2 s of sound). The video to upscale is the one that moves: not a cover, the most frames."""
    isolate_environment(monkeypatch, tmp_path, STREAM_DIFFVSR_ENGINE="bicubic")
    src = make_video(tmp_path / f"src{suffix}", 32, 24, Fraction(25), 50, audio="aac")
    both = _with_a_cover_picture_first(src, tmp_path / f"both{suffix}", attached=attached)
    out = tmp_path / "out.mkv"
    assert main(["upscale", str(both), "-o", str(out), "--preset", "ultrafast"]) == 0, capsys.readouterr().err
    said = capsys.readouterr().out
    assert f"Input:    both{suffix}: 32x24, 25 fps" in said
    assert re.search(r"Track:    video #[02] \(mjpeg\): not carried \(one video is upscaled", said)  # said
    info = media.probe(out)
    assert (info.video.width, info.video.height, info.video.frame_count) == (128, 96, 50)
    assert len(info.audio) == 1 and abs(info.audio[0].duration - 2) <= Fraction(1, 20)


def test_an_audio_file_with_a_cover_picture_is_not_a_video(tmp_path: Path, monkeypatch, capsys) -> None:
    """A song with its cover (an M4A, an MP3 in MP4): its one picture would have been "upscaled" as a
    one-frame video with the whole song beside it."""
    import av

    isolate_environment(monkeypatch, tmp_path, STREAM_DIFFVSR_ENGINE="bicubic")
    src = make_video(tmp_path / "src.mp4", 32, 24, Fraction(25), 25, audio="aac")
    with av.open(str(src)) as source, av.open(str(tmp_path / "sound.mp4"), "w") as out:
        stream = out.add_stream_from_template(source.streams.audio[0])
        for packet in source.demux(source.streams.audio[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    song = _with_a_cover_picture_first(tmp_path / "sound.mp4", tmp_path / "song.mp4", attached=True)
    with av.open(str(song)) as container:
        assert [v.disposition & av.stream.Disposition.attached_pic for v in container.streams.video] == [1024]
    assert main(["upscale", str(song), "-o", str(tmp_path / "out.mp4")]) == 3
    assert "an audio file with a cover picture; there is no video to upscale" in capsys.readouterr().err


def test_an_output_folder_that_does_not_exist_is_named(tmp_path: Path, monkeypatch, capsys) -> None:
    isolate_environment(monkeypatch, tmp_path, STREAM_DIFFVSR_ENGINE="bicubic")
    src = make_video(tmp_path / "in.mp4", 32, 24, 25, 4, audio=None)
    assert main(["upscale", str(src), "-o", f"{tmp_path / 'missing'}/"]) == 3
    assert capsys.readouterr().err.strip() == (f"vsr: error: {tmp_path / 'missing'}: the output folder does not "
                                               "exist. Create it or choose another output path.")


@pytest.mark.slow
def test_gradio_sample_video_trimmed_with_audio_in_sync(tmp_path: Path, monkeypatch, gradio_videos: Path,
                                                        capsys) -> None:
    isolate_environment(monkeypatch, tmp_path)
    src = gradio_videos / "b.mp4"  # 480x270, 30 fps, AAC
    out = tmp_path / "b_720.mp4"
    code = main(["upscale", str(src), "-o", str(out), "--engine", "bicubic", "--height", "720", "--start", "1",
                 "--end", "1.5", "--preset", "ultrafast", "--crf", "30"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    info = media.probe(out)
    assert (info.video.width, info.video.height) == (1280, 720)
    assert info.video.frame_count == 15 and info.video.avg_rate == 30
    (audio,) = info.audio
    assert audio.codec == "aac"
    assert abs(audio.start_time - info.video.start_time) <= Fraction(1, 30)
    assert abs(audio.duration - Fraction(1, 2)) <= Fraction(1, 30) + Fraction(1024, audio.sample_rate)
    assert "[ok] audio track 1 sync" in captured.out
    assert files_under(tmp_path / "tmp") == []
    _no_png(tmp_path)


def test_gradio_sample_without_audio(tmp_path: Path, monkeypatch, gradio_videos: Path, capsys) -> None:
    isolate_environment(monkeypatch, tmp_path)
    out = tmp_path / "muted.mp4"
    code = main(["upscale", str(gradio_videos / "muted_b.mp4"), "-o", str(out), "--engine", "bicubic",
                 "--end", "0.2", "--preset", "ultrafast"])
    assert code == 0, capsys.readouterr().err
    info = media.probe(out)
    assert (info.video.width, info.video.height, info.video.frame_count) == (1920, 1080, 6) and info.audio == ()


# Ctrl-C (exit 130, the checkpoint kept, --resume): tests/test_cli_resume.py

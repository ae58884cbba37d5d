"""Downloads: atomicity, credential scoping, object storage, the download operator and its Asset."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from kling_provider._storage import identity as _identity
from kling_provider.exceptions import KlingDownloadError, KlingValidationError
from kling_provider.hooks.kling import KlingHook
from kling_provider.operators.kling import (
    KLING_VIDEOS_ASSET,
    KlingDownloadVideoOperator,
    KlingGenerateVideoOperator,
)
from kling_provider.testing.simulator import Faults, KlingSimulator, sample_video
from kling_provider.types import Generation
from tests.conftest import SECRET_KEY, Script, context_for

MP4 = sample_video()


def ready(hook: KlingHook, faults: dict[str, Any] | None = None) -> Generation:
    generation_id = hook.create_generation(
        "klingai/v2.1-master-text-to-video", prompt="p",
        extra_params={"simulator_faults": faults} if faults else None)
    return hook.wait_for_generation(generation_id, poll_interval=60)


def test_download_into_memory_object_storage(sim_hook: KlingHook, simulator: KlingSimulator,
                                             memory_folder: Any) -> None:
    generation = ready(sim_hook)
    result = sim_hook.download_video(generation.video_url or "", memory_folder / "clip.mp4",
                                     expected_size=generation.file_size,
                                     generation_id=generation.generation_id)
    stored = memory_folder / "clip.mp4"
    assert result.size == generation.file_size
    assert stored.read_bytes() == simulator.video_of(generation.generation_id)
    assert sorted(p.name for p in memory_folder.iterdir()) == ["clip.mp4", "clip.mp4.kling.json"]
    sidecar = json.loads((memory_folder / "clip.mp4.kling.json").read_bytes())
    assert sidecar["generation_id"] == generation.generation_id
    assert sidecar["sha256"] == result.sha256
    again = sim_hook.download_video(generation.video_url or "", memory_folder / "clip.mp4",
                                    expected_size=generation.file_size,
                                    generation_id=generation.generation_id)
    assert (again.downloaded, again.uri, again.sha256) == (False, result.uri, result.sha256)
    assert simulator.ledger.count(origin="cdn") == 1


@pytest.mark.parametrize("fault", [{"drop_download_after": 200_000}, {"truncate_download": True},
                                   {"wrong_content_length": True}])
@pytest.mark.parametrize("where", ["file", "memory"])
def test_failed_downloads_leave_no_object(sim_hook: KlingHook, simulator: KlingSimulator,
                                          tmp_path: Path, memory_folder: Any,
                                          fault: dict[str, Any], where: str) -> None:
    generation = ready(sim_hook, {**fault, "video_size": 1_000_000})
    folder = tmp_path if where == "file" else memory_folder
    with pytest.raises(KlingDownloadError) as error:
        sim_hook.download_video(generation.video_url or "", folder / "v.mp4",
                                expected_size=generation.file_size)
    assert "Nothing was left" in str(error.value) or "may be incomplete" in str(error.value)
    assert list(folder.iterdir()) == []
    assert all("authorization" not in e.headers for e in simulator.ledger.entries(origin="cdn"))


def test_path_traversal_names_stay_inside(sim_hook: KlingHook, tmp_path: Path) -> None:
    generation = ready(sim_hook)
    inside = tmp_path / "inside"
    result = sim_hook.download_video(generation.video_url or "", f"{inside}/",
                                     file_name="../../etc/evil.sh",
                                     generation_id="../../etc/passwd:kling-video/v2")
    assert result.uri == (inside / "etcpasswd.sh").as_uri()
    assert [p.name for p in tmp_path.iterdir()] == ["inside"]
    name = _identity.default_file_name(
        _identity.VideoIdentity.of(None, "https://cdn.test/a/output.mp4?sig=1"), "..\\x/.mp4")
    assert re.fullmatch(r"[0-9a-f]{16}\.mp4", name)  # no id: a hash of the signed-free URL


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://cdn.test/a.mp4", "/local.mp4",
                                 "https:///nohost.mp4"])
def test_only_http_urls(sim_hook: KlingHook, tmp_path: Path, url: str) -> None:
    with pytest.raises(KlingValidationError, match="only absolute http"):
        sim_hook.download_video(url, tmp_path / "x.mp4")


def test_size_cap(sim_hook: KlingHook, tmp_path: Path) -> None:
    generation = ready(sim_hook, {"video_size": 500_000})
    with pytest.raises(KlingDownloadError, match="max_bytes=1000"):
        sim_hook.download_video(generation.video_url or "", tmp_path / "v.mp4", max_bytes=1000)
    assert list(tmp_path.iterdir()) == []


def test_not_an_mp4_is_refused(mock_hook: Any, tmp_path: Path) -> None:
    script = Script(httpx.Response(200, content=b"<html>login page</html>"))
    with pytest.raises(KlingDownloadError, match="does not start like an MP4"):
        mock_hook(script).download_video("https://cdn.test/v.mp4", tmp_path / "v.mp4")
    assert list(tmp_path.iterdir()) == []


def test_key_only_sent_to_api_origin_across_redirects(mock_hook: Any, tmp_path: Path) -> None:
    script = Script(
        httpx.Response(302, headers={"Location": "https://cdn.test/signed/v.mp4?sig=abc"}),
        httpx.Response(301, headers={"Location": "https://api.example.test/again.mp4"}),
        httpx.Response(302, headers={"Location": "http://api.example.test/plain.mp4"}),
        httpx.Response(302, headers={"Location": "https://api.example.test:8443/port.mp4"}),
        httpx.Response(302, headers={"Location": "https://API.Example.Test:443/case.mp4"}),
        httpx.Response(200, content=MP4))
    mock_hook(script).download_video("https://api.example.test/files/v.mp4", tmp_path / "v.mp4")
    sent = [(str(r.url), r.headers.get("authorization")) for r in script.requests]
    assert sent == [("https://api.example.test/files/v.mp4", f"Bearer {SECRET_KEY}"),
                    ("https://cdn.test/signed/v.mp4?sig=abc", None),
                    ("https://api.example.test/again.mp4", f"Bearer {SECRET_KEY}"),
                    ("http://api.example.test/plain.mp4", None),  # other scheme: other origin
                    ("https://api.example.test:8443/port.mp4", None),  # other port: other origin
                    # the same origin, spelt otherwise (host names ignore case, 443 is https's)
                    ("https://api.example.test/case.mp4", f"Bearer {SECRET_KEY}")]


def test_redirect_loop_is_bounded(mock_hook: Any, tmp_path: Path) -> None:
    loop = [httpx.Response(302, headers={"Location": "https://cdn.test/v.mp4"})] * 10
    script = Script(*loop)
    with pytest.raises(KlingDownloadError, match="redirected more than 5 times"):
        mock_hook(script).download_video("https://cdn.test/v.mp4", tmp_path / "v.mp4")
    assert len(script.requests) == 6


# -- the download operator ----------------------------------------------------------------------

def test_download_operator_from_generation_dict_emits_asset(sim_hook: KlingHook,
                                                            tmp_path: Path) -> None:
    generation = ready(sim_hook)
    from_operator = {"generation_id": generation.generation_id, "model": "m", "prompt": "a fox",
                     "video_url": generation.video_url, "file_size": generation.file_size,
                     "file_name": "output.mp4"}
    operator = KlingDownloadVideoOperator(task_id="d", generation=from_operator,
                                          destination=f"{tmp_path}/day/")
    context = context_for(None)
    result = operator.execute(context)
    uuid_part = generation.generation_id.split(":")[0]
    assert result["uri"] == (tmp_path / "day" / f"{uuid_part}.mp4").as_uri()
    assert result["downloaded"] is True
    assert KLING_VIDEOS_ASSET in operator.outlets
    extra = context["outlet_events"][KLING_VIDEOS_ASSET].extra
    assert extra == {"uri": result["uri"], "size": generation.file_size,
                     "generation_id": generation.generation_id, "model": "m", "prompt": "a fox"}
    again = operator.execute(context_for(None))
    assert again["downloaded"] is False  # a re-run keeps the complete file


def test_download_operator_reads_a_generation_given_as_json_text(sim_hook: KlingHook,
                                                                tmp_path: Path) -> None:
    """Airflow 3.3.2 gives a downstream task the result of a task that ended in the triggerer
    as JSON text (``tests/test_run_total_airflow.py`` shows it in real Airflow): it downloads
    like the dict; text that is not a JSON object is still refused, naming the parameter."""
    generation = ready(sim_hook)
    as_text = json.dumps({"generation_id": generation.generation_id, "model": "m",
                          "video_url": generation.video_url, "file_size": generation.file_size})
    operator = KlingDownloadVideoOperator(task_id="d", generation=as_text,
                                          destination=str(tmp_path / "v.mp4"), asset=None)
    result = operator.execute(context_for(None))
    assert result["generation_id"] == generation.generation_id and result["downloaded"] is True
    assert (tmp_path / "v.mp4").stat().st_size == generation.file_size
    for not_a_result in ("[1, 2]", "{not json", generation.video_url):
        refused = KlingDownloadVideoOperator(task_id="e", generation=not_a_result,
                                             destination=str(tmp_path / "w.mp4"), asset=None)
        with pytest.raises(KlingValidationError, match="parameter 'generation'"):
            refused.execute(context_for(None))
    assert not (tmp_path / "w.mp4").exists()


def test_download_operator_by_id_and_by_url(sim_hook: KlingHook, tmp_path: Path) -> None:
    generation = ready(sim_hook)
    by_id = KlingDownloadVideoOperator(task_id="a", generation_id=generation.generation_id,
                                       destination=str(tmp_path / "a.mp4"), asset=None)
    assert by_id.execute(context_for(None))["size"] == generation.file_size
    by_url = KlingDownloadVideoOperator(task_id="b", video_url=generation.video_url,
                                        destination=str(tmp_path / "b.mp4"))
    assert by_url.execute(context_for(None))["size"] == generation.file_size
    assert json.loads((tmp_path / "b.mp4.kling.json").read_text())["video_url"] == \
        (generation.video_url or "").split("?")[0]
    assert by_id.outlets == []
    with pytest.raises(KlingValidationError, match="exactly one of"):
        KlingDownloadVideoOperator(task_id="c", destination="x", video_url="u", generation_id="g")


def test_generate_operator_download_to_shortcut(airflow_sim: KlingSimulator,
                                                tmp_path: Path) -> None:
    operator = KlingGenerateVideoOperator(task_id="g", model="klingai/v2.1-master-text-to-video",
                                          prompt="p", deferrable=False, poll_interval=60,
                                          download_to=f"{tmp_path}/")
    context = context_for(None)
    result = operator.execute(context)
    stored = tmp_path / f"{result['generation_id'].split(':')[0]}.mp4"
    assert result["uri"] == stored.as_uri()
    assert stored.read_bytes() == airflow_sim.video_of(result["generation_id"])
    assert result["size"] == stored.stat().st_size
    assert result["downloaded"] is True
    # The same path as the download operator's: the copy is on the videos Asset's event, so
    # the videos page lists it as stored (it plays only a video an event names).
    assert operator.outlets == [KLING_VIDEOS_ASSET]
    assert context["outlet_events"][KLING_VIDEOS_ASSET].extra == {
        "generation_id": result["generation_id"], "model": "klingai/v2.1-master-text-to-video",
        "prompt": "p", "uri": result["uri"], "size": result["size"],
        **{k: result[k] for k in ("duration", "credits_used", "usd_spent", "generation_seconds",
                                  "estimated_usd") if result.get(k) is not None}}


def test_only_a_generate_task_that_downloads_updates_the_videos_asset() -> None:
    from airflow.sdk import DAG

    model = "klingai/v2.1-master-text-to-video"
    assert KlingGenerateVideoOperator(task_id="g", model=model, prompt="p").outlets == []
    with DAG("d", schedule=None):
        mapped = KlingGenerateVideoOperator.partial(
            task_id="m", model=model, download_to="/tmp/videos/").expand(prompt=["a", "b"])
        not_stored = KlingGenerateVideoOperator.partial(task_id="n", model=model).expand(
            prompt=["a"])
    assert mapped.outlets == [KLING_VIDEOS_ASSET]
    assert not_stored.outlets == []


# -- constant memory ---------------------------------------------------------------------------

RSS_SCRIPT = textwrap.dedent("""
    import json, os, resource, sys, tempfile
    from kling_provider.testing.simulator import KlingSimulator
    with KlingSimulator(time_scale=1e9, api_keys={"rss-key"}) as sim:
        os.environ["AIRFLOW_CONN_KLING_DEFAULT"] = sim.connection_uri().replace(
            sim.api_key, "rss-key")
        from kling_provider.hooks.kling import KlingHook
        hook = KlingHook()
        gid = hook.create_generation("klingai/v2.1-master-text-to-video", prompt="p",
            extra_params={"simulator_faults": {"video_size": int(sys.argv[1])}})
        generation = hook.wait_for_generation(gid, poll_interval=0.01)
        with tempfile.TemporaryDirectory() as folder:
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            result = hook.download_video(generation.video_url, folder + "/",
                                         expected_size=generation.file_size)
            after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"size": result.size, "growth_kib": after - before}))
""")


@pytest.mark.integration
def test_200_mb_download_keeps_memory_flat() -> None:
    size = 200 * 1024 * 1024
    out = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(size)], capture_output=True,
                         text=True, check=True, timeout=300).stdout
    measured = json.loads(out.strip().splitlines()[-1])
    assert measured["size"] == size
    assert measured["growth_kib"] < 50 * 1024, measured


def test_download_to_file_uri(sim_hook: KlingHook, simulator: KlingSimulator,
                              tmp_path: Path) -> None:
    generation = ready(sim_hook)
    uri = f"file://{tmp_path}/2026-11-21/0.mp4"
    result = sim_hook.download_video(generation.video_url or "", uri,
                                     expected_size=generation.file_size)
    assert result.uri == uri
    assert (tmp_path / "2026-11-21" / "0.mp4").read_bytes() == \
        simulator.video_of(generation.generation_id)


# -- a video's identity travels with it ---------------------------------------------------------

def test_generations_in_one_folder_never_collide(sim_hook: KlingHook, simulator: KlingSimulator,
                                                 tmp_path: Path) -> None:
    first, second = ready(sim_hook), ready(sim_hook)
    assert first.file_name == second.file_name == "output.mp4"  # what the API calls them all
    assert first.file_size == second.file_size
    results = [sim_hook.download_video(g.video_url or "", f"{tmp_path}/", file_name=g.file_name,
                                       expected_size=g.file_size, generation_id=g.generation_id)
               for g in (first, second)]
    assert [r.downloaded for r in results] == [True, True]
    for generation, result in zip((first, second), results, strict=True):
        stored = Path(result.uri.removeprefix("file://"))
        assert stored.name == generation.generation_id.split(":")[0] + ".mp4"
        assert stored.read_bytes() == simulator.video_of(generation.generation_id)
        sidecar = json.loads(Path(f"{stored}.kling.json").read_text())
        assert sidecar["generation_id"] == generation.generation_id
    assert results[0].sha256 != results[1].sha256


def test_existing_file_of_another_generation_is_never_reported(
        sim_hook: KlingHook, simulator: KlingSimulator, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    old, new = ready(sim_hook), ready(sim_hook)
    target = tmp_path / "clip.mp4"
    sim_hook.download_video(old.video_url or "", target, expected_size=old.file_size,
                            generation_id=old.generation_id)
    result = sim_hook.download_video(new.video_url or "", target, expected_size=new.file_size,
                                     generation_id=new.generation_id)
    beside = tmp_path / f"clip.{new.generation_id.split(':')[0]}.mp4"
    assert (result.uri, result.downloaded) == (beside.as_uri(), True)
    assert beside.read_bytes() == simulator.video_of(new.generation_id)
    assert target.read_bytes() == simulator.video_of(old.generation_id)  # untouched
    assert f"holds the video of {old.generation_id!r}" in caplog.text
    again = sim_hook.download_video(new.video_url or "", target, expected_size=new.file_size,
                                    generation_id=new.generation_id)
    assert (again.uri, again.downloaded) == (beside.as_uri(), False)  # found beside, verified


def test_unknown_origin_or_changed_files_are_not_kept(sim_hook: KlingHook,
                                                      simulator: KlingSimulator,
                                                      tmp_path: Path) -> None:
    generation = ready(sim_hook)
    video = simulator.video_of(generation.generation_id)
    target = tmp_path / "clip.mp4"
    target.write_bytes(video)  # right bytes, but nothing says whose: unknown origin
    result = sim_hook.download_video(generation.video_url or "", target,
                                     expected_size=generation.file_size,
                                     generation_id=generation.generation_id)
    assert result.downloaded and result.uri != target.as_uri()
    stored = Path(result.uri.removeprefix("file://"))
    stored.write_bytes(video[:-4] + b"XXXX")  # same size, claimed by the sidecar, but changed
    with pytest.raises(KlingDownloadError, match="changed copy"):
        sim_hook.download_video(generation.video_url or "", target,
                                expected_size=generation.file_size,
                                generation_id=generation.generation_id)
    replaced = sim_hook.download_video(generation.video_url or "", stored,
                                       expected_size=generation.file_size,
                                       generation_id=generation.generation_id, overwrite=True)
    assert replaced.downloaded and stored.read_bytes() == video


def test_overwrite_relabels_before_replacing(sim_hook: KlingHook, simulator: KlingSimulator,
                                             tmp_path: Path) -> None:
    old, new = ready(sim_hook), ready(sim_hook)
    target = tmp_path / "clip.mp4"
    sim_hook.download_video(old.video_url or "", target, generation_id=old.generation_id)
    simulator.set_faults(new.generation_id, Faults(truncate_download=True))
    with pytest.raises(KlingDownloadError):
        sim_hook.download_video(new.video_url or "", target, generation_id=new.generation_id,
                                overwrite=True)
    assert json.loads((tmp_path / "clip.mp4.kling.json").read_text())["generation_id"] == \
        old.generation_id  # a failed replacement changes nothing
    simulator.set_faults(new.generation_id, Faults())
    sim_hook.download_video(new.video_url or "", target, generation_id=new.generation_id,
                            overwrite=True)
    assert target.read_bytes() == simulator.video_of(new.generation_id)
    assert json.loads((tmp_path / "clip.mp4.kling.json").read_text())["generation_id"] == \
        new.generation_id
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "clip.mp4.kling.json"]


def test_crash_while_replacing_never_leaves_a_wrong_label(sim_hook: KlingHook, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = ready(sim_hook), ready(sim_hook)
    target = tmp_path / "clip.mp4"
    sim_hook.download_video(old.video_url or "", target, generation_id=old.generation_id)
    real_rename = Path.rename

    def crash_on_video_rename(self: Path, destination: Any) -> Any:
        if Path(destination) == target:
            raise OSError("disk gone")
        return real_rename(self, destination)

    monkeypatch.setattr(Path, "rename", crash_on_video_rename)
    with pytest.raises(OSError, match="disk gone"):
        sim_hook.download_video(new.video_url or "", target, generation_id=new.generation_id,
                                overwrite=True)
    # The old label went first: nothing claims to be either generation, no temporary is left.
    assert sorted(p.name for p in tmp_path.iterdir()) == []

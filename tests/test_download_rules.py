"""What a download may reach and how much it reads: hosts, sizes, leftovers, credentials.

Video URLs come from an API answer or a DAG argument, so these hold against hostile ones: no
private, loopback or link-local address (after DNS, after every redirect) unless it is the API's
own host or the connection allows it; never more than ``max_bytes`` nor past the announced size;
no temporary file of a killed attempt left behind; no URL credentials in logs or lineage.
"""

from __future__ import annotations

import hashlib
import importlib.util
import ipaddress
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kling_provider._checks import DEFAULT_MAX_BYTES
from kling_provider._storage.hosts import HostPolicy
from kling_provider._storage.lineage import dataset_id
from kling_provider.exceptions import KlingDownloadError, KlingValidationError
from kling_provider.hooks.kling import KlingHook
from kling_provider.operators.kling import KlingDownloadVideoOperator, KlingGenerateVideoOperator
from kling_provider.testing.simulator import Faults, KlingSimulator
from tests.conftest import FakeClock, Script, context_for
from tests.test_download import MP4, ready

# -- which hosts ----------------------------------------------------------------------------------

def test_loopback_cdn_refused_unless_it_is_the_api_host_or_allowed(
        sim_hook: KlingHook, simulator: KlingSimulator, kling_env: Callable[..., None],
        clock: FakeClock, tmp_path: Path) -> None:
    generation = ready(sim_hook)  # API host 127.0.0.1 = the CDN's: allowed by that rule alone
    assert sim_hook.download_video(generation.video_url or "", tmp_path / "a.mp4").downloaded
    as_named_host = simulator.base_url.replace("127.0.0.1", "localhost")
    kling_env(as_named_host)  # now the API host is 'localhost', the CDN still 127.0.0.1
    with pytest.raises(KlingDownloadError, match=r"'127\.0\.0\.1'.*'allow_private_hosts'"):
        KlingHook(clock=clock).download_video(generation.video_url or "", tmp_path / "b.mp4")
    assert simulator.ledger.count(origin="cdn") == 1  # the refused one never reached it
    assert not (tmp_path / "b.mp4").exists()
    for allowed in (["127.0.0.1"], "127.0.0.0/8", True, "true"):
        kling_env(as_named_host, allow_private_hosts=allowed)
        result = KlingHook(clock=clock).download_video(generation.video_url or "",
                                                       tmp_path / f"{allowed}.mp4")
        assert result.downloaded


def test_a_name_that_resolves_to_loopback_is_refused(sim_hook: KlingHook,
                                                     simulator: KlingSimulator,
                                                     tmp_path: Path) -> None:
    generation = ready(sim_hook)
    by_name = (generation.video_url or "").replace("127.0.0.1", "localhost")
    with pytest.raises(KlingDownloadError, match=r"'localhost': it is at (127\.0\.0\.1|::1)"):
        sim_hook.download_video(by_name, tmp_path / "v.mp4")
    assert simulator.ledger.count(origin="cdn") == 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("to", ["http://169.254.169.254/latest/meta-data/",
                                "http://[::ffff:169.254.169.254]/latest/",
                                "https://10.1.2.3/v.mp4", "http://[fd00::1]/v.mp4"])
def test_a_redirect_to_an_internal_address_is_refused(mock_hook: Any, tmp_path: Path,
                                                      to: str) -> None:
    script = Script(httpx.Response(302, headers={"Location": to}),
                    httpx.Response(200, content=MP4))
    with pytest.raises(KlingDownloadError, match="allow_private_hosts"):
        mock_hook(script).download_video("https://cdn.test/v.mp4", tmp_path / "v.mp4")
    assert [str(r.url) for r in script.requests] == ["https://cdn.test/v.mp4"]


INTERNAL = ["127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
            "100.64.0.0/10", "0.0.0.0/8", "::1/128", "fc00::/7", "fe80::/10"]


def _embedded(address: ipaddress.IPv4Address, form: str) -> ipaddress.IPv4Address | \
        ipaddress.IPv6Address:
    if form == "mapped":
        return ipaddress.IPv6Address(f"::ffff:{address}")
    if form == "nat64":
        return ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(address))
    if form == "6to4":
        return ipaddress.IPv6Address((0x2002 << 112) | (int(address) << 80))
    return address


@settings(max_examples=200, derandomize=True)
@given(network=st.sampled_from(INTERNAL), data=st.data(),
       form=st.sampled_from(["plain", "mapped", "nat64", "6to4"]))
def test_internal_addresses_need_an_explicit_allowance(network: str, data: st.DataObject,
                                                       form: str) -> None:
    address = data.draw(st.ip_addresses(network=network))
    if isinstance(address, ipaddress.IPv4Address):
        address = _embedded(address, form)  # the same address written the IPv6 ways
    assert not HostPolicy.of(None, api_host="api.test").allows("cdn.test", address)
    assert HostPolicy.of(None, api_host="cdn.test").allows("cdn.test", address)
    assert HostPolicy.of(True, api_host="api.test").allows("cdn.test", address)
    assert HostPolicy.of(["cdn.test"], api_host="api.test").allows("CDN.test", address)
    assert HostPolicy.of(network, api_host="api.test").allows("cdn.test", address)


@settings(max_examples=100, derandomize=True)
@given(address=st.ip_addresses(v=4, network="8.0.0.0/7") | st.ip_addresses(
    v=6, network="2600::/16"))
def test_public_addresses_are_reached(address: Any) -> None:
    assert HostPolicy.of(None, api_host="api.test").allows("cdn.test", address)


@pytest.mark.parametrize("value", [5, {"mirror": True}, [1, 2]])
def test_allow_private_hosts_is_validated(kling_env: Callable[..., None], value: Any) -> None:
    kling_env("https://api.example.test", allow_private_hosts=value)
    with pytest.raises(KlingValidationError, match=r"'allow_private_hosts'=.*list of host"):
        KlingHook().settings  # noqa: B018 - resolving the connection is what is tested


# -- how much ------------------------------------------------------------------------------------

def counting(chunks: list[bytes], sent: list[int]) -> Iterator[bytes]:
    for chunk in chunks:
        sent.append(len(chunk))
        yield chunk


def test_max_bytes_has_a_default(mock_hook: Any, tmp_path: Path) -> None:
    sent: list[int] = []
    huge = httpx.Response(200, headers={"Content-Length": str(DEFAULT_MAX_BYTES + 1)},
                          content=counting([MP4] * 3, sent))
    with pytest.raises(KlingDownloadError, match=f"more than max_bytes={DEFAULT_MAX_BYTES}"):
        mock_hook(Script(huge)).download_video("https://cdn.test/v.mp4", tmp_path / "v.mp4")
    assert sent == [] and list(tmp_path.iterdir()) == []
    assert DEFAULT_MAX_BYTES == 4 * 1024**3  # the figure docs/howto/download.rst gives


def test_reading_stops_at_the_announced_size(mock_hook: Any, tmp_path: Path) -> None:
    sent: list[int] = []
    endless = httpx.Response(200, content=counting([MP4] + [b"\0" * 65536] * 200, sent))
    with pytest.raises(KlingDownloadError, match=f"more than the {len(MP4)} bytes announced"):
        mock_hook(Script(endless)).download_video("https://cdn.test/v.mp4", tmp_path / "v.mp4",
                                                  expected_size=len(MP4))
    assert len(sent) <= 2  # the video, then one chunk too many: nothing more is read
    assert list(tmp_path.iterdir()) == []


def test_generate_operator_download_to_takes_max_bytes(airflow_sim: KlingSimulator,
                                                       tmp_path: Path) -> None:
    with pytest.raises(KlingValidationError, match=r"'max_bytes'=-1"):
        KlingGenerateVideoOperator(task_id="g", model="klingai/v2.1-master-text-to-video",
                                   prompt="p", download_to=f"{tmp_path}/", max_bytes=-1)
    operator = KlingGenerateVideoOperator(task_id="g", model="klingai/v2.1-master-text-to-video",
                                          prompt="p", deferrable=False, poll_interval=60,
                                          download_to=f"{tmp_path}/", max_bytes=1000)
    with pytest.raises(KlingDownloadError, match="max_bytes=1000"):
        operator.execute(context_for(None))
    assert airflow_sim.ledger.count(origin="cdn") == 0
    assert list(tmp_path.iterdir()) == []


# -- what a killed attempt leaves ------------------------------------------------------------------

KILLED_MID_DOWNLOAD = textwrap.dedent("""
    import os, signal, sys
    from kling_provider._storage import download as _download
    from kling_provider.hooks.kling import KlingHook

    real = _download.body_chunks
    def body_chunks(*args):
        for chunk in real(*args):
            yield chunk
            os.kill(os.getpid(), signal.SIGKILL)  # mid-write, as the OOM killer would
    _download.body_chunks = body_chunks
    KlingHook().download_video(sys.argv[1], sys.argv[2], generation_id=sys.argv[3])
""")


def test_temporary_files_of_a_killed_attempt_are_removed_at_the_next(
        sim_hook: KlingHook, simulator: KlingSimulator, tmp_path: Path) -> None:
    generation, other = ready(sim_hook, {"video_size": 3_000_000}), ready(sim_hook)
    target = tmp_path / "clip.mp4"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_MID_DOWNLOAD, generation.video_url or "", str(target),
         generation.generation_id], env=dict(os.environ), capture_output=True, timeout=120,
        check=False)
    assert killed.returncode == -9, killed.stderr[-2000:]
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].endswith(".part"), left  # what a SIGKILL leaves
    others = tmp_path / f".clip.mp4.{other.generation_id.split(':')[0]}.0123.part"
    others.write_bytes(b"another generation's download, maybe still running")
    sim_hook.download_video(generation.video_url or "", target,
                            expected_size=generation.file_size,
                            generation_id=generation.generation_id)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["clip.mp4", "clip.mp4.kling.json", others.name])


# -- credentials in URLs ---------------------------------------------------------------------------

def test_url_credentials_reach_neither_logs_nor_lineage(
        airflow_sim: KlingSimulator, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    generation = ready(KlingHook())
    url = (generation.video_url or "").replace("http://", "http://user:hunter2@") + "?sig=s3cr3t"
    airflow_sim.set_faults(generation.generation_id, Faults(drop_download_after=100))
    failing = KlingDownloadVideoOperator(task_id="d", video_url=url,
                                         destination=str(tmp_path / "v.mp4"))
    with pytest.raises(KlingDownloadError) as error:
        failing.execute(context_for(None))
    airflow_sim.set_faults(generation.generation_id, Faults())
    operator = KlingDownloadVideoOperator(task_id="d", video_url=url,
                                          destination=str(tmp_path / "v.mp4"))
    operator.execute(context_for(None))
    lineage = operator.get_openlineage_facets_on_complete(None)
    if importlib.util.find_spec("airflow.providers.openlineage") is None:
        assert lineage is None  # no OpenLineage provider (it needs Python 3.11+): no facets
        shown = ""  # what a namespace would show is still checked through dataset_id below
    else:
        shown = json.dumps([[d.namespace, d.name] for d in lineage.inputs + lineage.outputs])
    for secret in ("hunter2", "s3cr3t"):
        assert secret not in str(error.value)
        assert secret not in caplog.text
        assert secret not in shown
    assert "Download attempt 1/3" in caplog.text  # the URL was logged, without them
    assert dataset_id("https://u:pw@img.test:8443/a.png?sig=1#x") == (
        "https://img.test:8443", "/a.png")
    assert dataset_id("s3://key:secret@bucket/videos/a.mp4") == ("s3://bucket", "videos/a.mp4")


def test_the_recorded_sha256_is_that_of_the_stored_bytes(sim_hook: KlingHook,
                                                          simulator: KlingSimulator,
                                                          tmp_path: Path) -> None:
    generation = ready(sim_hook, {"video_size": 5_000_000})  # many chunks through the thread
    result = sim_hook.download_video(generation.video_url or "", tmp_path / "v.mp4",
                                     generation_id=generation.generation_id)
    video = simulator.video_of(generation.generation_id)
    assert (tmp_path / "v.mp4").read_bytes() == video
    assert result.sha256 == hashlib.sha256(video).hexdigest()
    assert not [t for t in threading.enumerate() if t.name.startswith("kling-sha256")]  # ended

"""The client's own distribution (client/setup.py): the client modules, urllib3 as its only dependency."""

import subprocess
import sys
import zipfile

from tests.integration.broker_process import ROOT


def test_client_wheel_holds_the_client_and_needs_only_urllib3(tmp_path):
    build = tmp_path / "src"
    # build from a copy: pip and setuptools write build/ and *.egg-info beside setup.py
    subprocess.run(["cp", "-rL", str(ROOT / "client"), str(build)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "-w", str(tmp_path / "dist"), str(build)], check=True, capture_output=True, timeout=120)
    wheel, = (tmp_path / "dist").glob("broker_client-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("__init__", "core", "errors", "response", "transport", "zato", "django", "flask"):
        assert f"broker_client/{module}.py" in names
    assert not [n for n in names if n.startswith("broker/")]  # never the server's package
    metadata = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert [r for r in requires if "extra ==" not in r] == ["Requires-Dist: urllib3>=1.26.8"]

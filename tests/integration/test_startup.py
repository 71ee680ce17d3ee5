"""Starting the broker: plugin discovery, bad configs, missing secrets."""

import os
import re
import signal
import subprocess
import textwrap
import venv


from tests.integration.broker_process import ROOT, BrokerProcess, twistd_command


def _run_broker(config, env=None, timeout=60):
    result = subprocess.run(
        twistd_command("-n", "--pidfile=", "broker", "--config", str(config)),
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True, text=True, timeout=timeout)
    return result.returncode, (result.stdout + result.stderr).strip()


def test_bad_config_stops_startup_with_one_line(tmp_path):
    """A bad key stops startup: exit status non-zero, one line naming file, line and key."""
    config = tmp_path / "bad.yaml"
    config.write_text(textwrap.dedent("""\
        name: t
        channels:
          - name: x
            type: http
            path: no-slash
            service: demo.echo
        """))
    status, output = _run_broker(config)
    assert status != 0
    assert "Traceback" not in output
    assert output.splitlines() == [f"broker: {config}:5: channels[0].path: " + output.split(": ", 3)[3]]


def test_the_readme_config_error_example_is_what_the_broker_says(tmp_path):
    """README's "A mistake stops startup with one line" example, produced for real: the sample
    config with demo.echo's path written without its slash (so it stays true as the file changes).
    The wording, key and index must match; the line number may drift as the sample config grows."""
    readme = (ROOT / "README.md").read_text()
    example = re.search(r"\n(broker: etc/broker\.yaml:\d+: .*)\n", readme).group(1)
    (tmp_path / "etc").mkdir()
    (tmp_path / "plugins").symlink_to(ROOT / "plugins")
    config = (ROOT / "etc" / "broker.yaml").read_text()
    assert "    path: /demo/echo\n" in config
    (tmp_path / "etc" / "broker.yaml").write_text(config.replace("    path: /demo/echo\n",
                                                                 "    path: demo/echo\n", 1))
    result = subprocess.run(twistd_command("-n", "--pidfile=", "broker"), cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    said = (result.stdout + result.stderr).strip().splitlines()[-1]
    line_number = re.compile(r"(?<=etc/broker\.yaml:)\d+")
    assert line_number.sub("N", said) == line_number.sub("N", example)


def test_unknown_service_in_channel(tmp_path):
    """A channel naming a service that does not exist is reported with its line."""
    config = tmp_path / "bad.yaml"
    config.write_text("channels:\n  - name: x\n    type: http\n    path: /x\n    service: no.such\n")
    status, output = _run_broker(config)
    assert status != 0
    assert f"{config}:5: channels[0].service" in output
    assert "no.such" in output and "Traceback" not in output


def test_missing_env_variable(tmp_path):
    """``${VAR}`` with no default and no variable is an error naming the variable."""
    config = tmp_path / "bad.yaml"
    config.write_text("name: ${BROKER_TEST_UNSET_VARIABLE}\n")
    assert "BROKER_TEST_UNSET_VARIABLE" not in os.environ
    status, output = _run_broker(config)
    assert status != 0
    assert "BROKER_TEST_UNSET_VARIABLE" in output and "Traceback" not in output


def test_broken_plugin_is_named(tmp_path):
    """A plugin that fails to import stops startup naming the file."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "broken.py").write_text("import no_such_module_anywhere\n")
    config = tmp_path / "c.yaml"
    config.write_text("services:\n  paths: [plugins]\n")
    status, output = _run_broker(config)
    assert status != 0
    assert "broken.py" in output and "no_such_module_anywhere" in output
    assert "Traceback" not in output


def test_port_in_use_is_one_line(tmp_path):
    """A listen port already taken stops startup with one line, not a traceback."""
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "c.yaml"
        config.write_text(f"http:\n  listen: tcp:{port}:interface=127.0.0.1\n")
        status, output = _run_broker(config)
    assert status != 0
    assert f"cannot listen on tcp:{port}" in output and "Traceback" not in output


def test_definition_without_secret_warns(tmp_path):
    """A security definition without a secret says at startup that it accepts nobody, and
    which variable to set (the one its secret is read from), or else which key is empty."""
    config = tmp_path / "c.yaml"
    config.write_text(textwrap.dedent("""\
        http:
          listen: ${BROKER_LISTEN}
        security:
          - name: admin
            type: basic_auth
            username: admin
            password: ${BROKER_ADMIN_PASSWORD:}
          - name: apps
            type: apikey
        """))
    broker = BrokerProcess(config, env={"BROKER_ADMIN_PASSWORD": ""}).start()
    try:
        assert broker.wait_for_log(
            "security definition admin accepts nobody: set BROKER_ADMIN_PASSWORD "
            f"({config}:7: security[0].password: is empty)")
        assert broker.wait_for_log(
            f"security definition apps accepts nobody: {config}:8: security[1].key: is empty")
    finally:
        broker.stop()


def test_startup_says_where_once_and_ready_lists_the_urls():
    """One line says where the node listens; the ready line gives the URLs to open."""
    broker = BrokerProcess().start()
    try:
        port = broker.port
        base = f"127.0.0.1:{port}"
        ready = [line for line in broker.lines if "broker broker ready" in line]
        assert len(ready) == 1
        assert ready[0].rstrip().endswith(
            f"ready: http://{base}/docs ws://{base}/ws http://{base}/demo/live "
            f"http://{base}/broker/admin/ui"), ready
        saying_where = [line for line in broker.lines if str(port) in line and line not in ready]
        assert len(saying_where) == 1, saying_where
    finally:
        broker.stop()


def test_ready_line_without_pages_gives_the_root_url(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("http:\n  listen: ${BROKER_LISTEN}\n  docs: false\npubsub: {enabled: false}\n")
    broker = BrokerProcess(config).start()
    try:
        assert f"ready: http://127.0.0.1:{broker.port}/\n" in broker.output
    finally:
        broker.stop()


def test_listen_option_overrides_config():
    """``--listen`` wins over the config's listener."""
    broker = BrokerProcess(env={"BROKER_LISTEN": "tcp:1:interface=127.0.0.1"},
                           args=["--listen", "tcp:0:interface=127.0.0.1"]).start()
    try:
        assert broker.request("GET", "/broker/ping")[0] == 200
    finally:
        broker.stop()


def test_sigterm_stops_cleanly():
    """SIGTERM stops the services in order; twistd then re-raises the signal, as init systems expect."""
    broker = BrokerProcess().start()
    assert broker.stop() in (0, -signal.SIGTERM)
    assert "broker broker stopping" in broker.output
    assert "Main loop terminated" in broker.output
    assert "Traceback" not in broker.output


def test_plugin_listed_after_plain_install(tmp_path):
    """After ``pip install .`` into a clean environment, ``twistd --help`` lists broker."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "twisted", "setuptools", "wheel"], check=True, timeout=300)
    subprocess.run([*pip, "--no-deps", "--no-build-isolation", str(ROOT)], check=True, timeout=300,
                   cwd=tmp_path)
    result = subprocess.run([str(env_dir / "bin" / "twistd"), "--help"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60, env={"PATH": os.environ.get("PATH", "")})
    assert result.returncode == 0
    assert any(line.split()[:1] == ["broker"] for line in result.stdout.splitlines()), result.stdout
    site = subprocess.run([str(python), "-c", "import twisted, os; print(os.path.dirname(twisted.__file__))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert os.path.exists(os.path.join(site, "plugins", "broker_plugin.py"))

"""Settings and lab profiles fail fast with messages that name the variable or field."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.errors import ConfigError
from config.profiles import load_profile, load_profiles, nested_image_problem
from config.settings import load_settings

PROFILES = Path(__file__).resolve().parents[2] / "config" / "profiles"


def test_defaults_are_embedded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.is_sqlite and settings.slack_bot_token is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SLACK_BOT_TOKEN": "xoxp-123456789012"}, "SLACK_BOT_TOKEN: must start with 'xoxb-'"),
        ({"SLACK_BOT_TOKEN": "xoxb-your-token-here"}, "SLACK_BOT_TOKEN: looks like a placeholder"),
        ({"LABBOT_DATABASE_URL": "mysql://x"}, "LABBOT_DATABASE_URL: must start with"),
        ({"LABBOT_MAX_LABS_PER_USER": "0"}, "LABBOT_MAX_LABS_PER_USER"),
        ({"LABBOT_EXPIRY_WARNING_OFFSETS": "30m,soon"}, "LABBOT_EXPIRY_WARNING_OFFSETS"),
    ],
)
def test_bad_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_secrets_never_print(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1234567890-abcdefghij")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "0123456789abcdef0123")
    monkeypatch.setenv("LABBOT_SECRET_KEY", "a-real-secret-key-of-some-length")
    settings = load_settings()
    assert "xoxb-1234567890" not in repr(settings) and "0123456789abcdef" not in str(settings.model_dump())


def test_lists_are_comma_separated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LABBOT_ADMIN_USERS", "U1, U2,,")
    assert load_settings().admin_users == ["U1", "U2"]


def test_shipped_profiles_load() -> None:
    profiles = load_profiles(PROFILES)
    assert set(profiles) >= {"zcct", "sandbox"}
    assert profiles["zcct"].iscsi.backend == "targetcli" and profiles["sandbox"].iscsi.backend == "tgt"
    assert profiles["zcct"].vpc_network is None and profiles["zcct"].lab_network is not None
    assert profiles["zcct"].lab_network.vxlan_pool == "lab-vxlan-pool"
    assert profiles["zcct"].data_volume.size_gb == 50


def test_bad_profile_names_file_field_and_reason(tmp_path: Path) -> None:
    text = (PROFILES / "sandbox.yaml").read_text().replace("backend: tgt", "backend: lio")
    bad = tmp_path / "sandbox.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=r"sandbox.yaml: iscsi.backend: Input should be 'targetcli' or 'tgt'"):
        load_profile(bad)
    # Without a per-lab network, VM1 and VM2 must share a platform network.
    good = (PROFILES / "sandbox.yaml").read_text()
    shared = good.split("lab_network:")[0] + good.split("cidr: 198.19.8.0/24\n")[1]
    bad.write_text(shared)
    with pytest.raises(ConfigError, match="must share an L3 network"):
        load_profile(bad)
    vm2_on_vpc = "  image: sandbox-mn\n  l3_networks: [vpc]\n"
    bad.write_text(shared.replace("  image: sandbox-mn\n", vm2_on_vpc)
                   .replace("l3_networks: [sandbox-public]", "l3_networks: [sandbox-public, vpc]"))
    assert load_profile(bad).vpc_network == "vpc"


@pytest.mark.parametrize(("old", "new", "reason"), [
    ("cidr: 198.19.8.0/24", "cidr: 198.19.200.0/24", r"nested.network \(198.19.200.0/24\) overlaps lab_network.cidr"),
    ("cidr: 198.19.8.0/24", "cidr: 198.19.8.1/24", "lab_network.cidr: .*host bits zero"),
    ("cidr: 198.19.8.0/24", "cidr: 198.19.8.0/30", r"lab_network.cidr: .*/29 or larger"),
    ("ip_end: 198.19.200.100", "ip_end: 198.19.201.100", r"nested.network: .*ascending range inside"),
    ("  network:\n", "  network:\n    physical_interface: 'eth0; reboot'\n", "physical_interface: .*interface name"),
])
def test_bad_network_settings_are_refused_with_the_reason(tmp_path: Path, old: str, new: str, reason: str) -> None:
    text = (PROFILES / "sandbox.yaml").read_text()
    assert old in text
    bad = tmp_path / "sandbox.yaml"
    bad.write_text(text.replace(old, new))
    with pytest.raises(ConfigError, match=reason):
        load_profile(bad)


@pytest.mark.parametrize(("field", "name", "operator"), [
    ("image: sandbox-jump", "image: jump!=other", "!="),
    ("instance_offering: sandbox-small", "instance_offering: small>=2c", ">="),
    ("l3_networks: [sandbox-public]", "l3_networks: [pub~=x]", "~="),
    ("vxlan_pool: sandbox-vxlan-pool", "vxlan_pool: \"pool?=a\"", "?="),
    ("image: sandbox-mn", "image: mn is null", "is null"),
])
def test_platform_names_with_query_operator_text_are_refused(tmp_path: Path, field: str, name: str,
                                                            operator: str) -> None:
    # labbot finds platform resources with q=name=<value>; ZStack splits a condition at its first operator.
    text = (PROFILES / "sandbox.yaml").read_text()
    assert field in text
    bad = tmp_path / "sandbox.yaml"
    bad.write_text(text.replace(field, name, 1))
    with pytest.raises(ConfigError, match="ZStack query operator") as refused:
        load_profile(bad)
    assert repr(operator) in str(refused.value) and "sandbox.yaml" in str(refused.value)


def test_an_iso_nested_image_is_refused_and_platform_settings_are_checked(tmp_path: Path) -> None:
    text = (PROFILES / "sandbox.yaml").read_text()
    iso = tmp_path / "sandbox.yaml"
    iso.write_text(text.replace("format: qcow2", "format: iso"))
    with pytest.raises(ConfigError, match=r"nested\.image\.format: .*an ISO cannot be the nested VM's root disk"):
        load_profile(iso)
    iso.write_text(text.replace("cpu_mode: host-passthrough", "cpu_mode: host-passthru"))
    with pytest.raises(ConfigError, match=r"vm2\.cpu_mode"):
        load_profile(iso)
    profile = load_profile(PROFILES / "sandbox.yaml")
    assert (profile.vm2.cpu_mode, profile.vm1.cpu_mode, profile.vm2.architecture) == ("host-passthrough", None,
                                                                                     "x86_64")


def test_the_nested_image_file_is_checked_with_what_is_wrong(tmp_path: Path) -> None:
    profile = load_profile(PROFILES / "zcct.yaml")
    spec = profile.nested.image
    assert spec.file and spec.url is None and spec.download_url("198.19.0.5") == \
        f"http://198.19.0.5:8000/{Path(spec.file).name}"
    missing = nested_image_problem(profile, tmp_path)
    assert missing is not None and "does not exist" in missing and "nested.image.file" in missing
    image = tmp_path / spec.file
    image.parent.mkdir(parents=True)
    image.write_bytes(b"<html>404 Not Found</html>")
    assert "is not a qcow2 image, but nested.image.format is qcow2" in (nested_image_problem(profile, tmp_path) or "")
    image.write_bytes(b"QFI\xfb" + bytes(60))
    assert nested_image_problem(profile, tmp_path) is None


def test_a_nested_image_needs_a_file_or_a_url(tmp_path: Path) -> None:
    text = (PROFILES / "sandbox.yaml").read_text().replace("    file: build/sandbox/nested-cirros.qcow2\n", "")
    (tmp_path / "sandbox.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"nested\.image: Value error, give file"):
        load_profile(tmp_path / "sandbox.yaml")


def test_a_baked_install_needs_no_installer_and_refuses_one(tmp_path: Path) -> None:
    """``install: {mode: baked}`` (VM2's image holds an installed ZStack): no installer to find; one given is a
    mistake worth saying, and the installer mode still needs one."""
    text = (PROFILES / "sandbox.yaml").read_text()
    installer = "  installer: /opt/zstack-dvd/*/*/zstack-installer.bin\n  command: bash {installer} -E\n"
    assert installer in text
    baked = tmp_path / "sandbox.yaml"
    baked.write_text(text.replace(installer, "  mode: baked\n"))
    profile = load_profile(baked)
    assert profile.install.mode == "baked" and profile.install.installer_patterns == []
    baked.write_text(text.replace(installer, "  mode: baked\n  installer: /opt/zstack-installer.bin\n"))
    with pytest.raises(ConfigError, match="installer: a baked VM2 image has ZStack installed already"):
        load_profile(baked)
    baked.write_text(text.replace(installer, ""))
    with pytest.raises(ConfigError, match="install: Value error, installer: give at least one path"):
        load_profile(baked)


def test_the_lines_labbot_bake_prints_make_a_baked_profile(tmp_path: Path) -> None:
    """What `labbot bake` tells the admin to put in a profile is a valid profile once merged."""
    import yaml

    from bot.cli_bake import profile_lines
    from services.labs.build.bake import BakedImage

    baked = BakedImage(uuid="a" * 32, name="labbot-sandbox-vm2-baked-20261203-2343", zstack_version="5.2.1",
                       profile="sandbox", source_lab="bake-1", size_bytes=1)
    data = yaml.safe_load((PROFILES / "sandbox.yaml").read_text())
    extra = yaml.safe_load(profile_lines(baked))
    data["vm2"].update(extra["vm2"])
    data["install"] = extra["install"]
    (tmp_path / "sandbox.yaml").write_text(yaml.safe_dump(data))
    profile = load_profile(tmp_path / "sandbox.yaml")
    assert profile.vm2.image == baked.name and profile.install.mode == "baked"

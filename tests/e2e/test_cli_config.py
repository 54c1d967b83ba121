"""Configuration errors and --check-config, through the real entry point (main.py)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.cli import (
    BOT_PASSWORD,
    DIFY_KEY,
    assert_no_traceback,
    clean_env,
    main_py,
    run,
    workdir_fixture,  # noqa: F401 - fixture "workdir"
)

# Four independent mistakes plus one missing variable; each must be reported in the same run.
BROKEN = {
    "AIM_PASSWORD": BOT_PASSWORD,
    "AIM_PORT": "99999",
    "DIFY_API_KEY": DIFY_KEY,
    "DIFY_API_URL": "ftp://dify.example.com/v1",
    "LOG_LEVEL": "LOUD",
    "SHUTDOWN_GRACE": "soon",
}
BROKEN_NAMES = ("AIM_USERNAME", "AIM_PORT", "DIFY_API_URL", "LOG_LEVEL", "SHUTDOWN_GRACE")


async def test_invalid_config_exits_2_listing_every_problem(workdir: Path) -> None:
    result = await run(*main_py(), env=clean_env(**BROKEN), cwd=workdir)

    assert result.code == 2, result.output
    assert "invalid configuration (5 problems)" in result.stderr
    for name in BROKEN_NAMES:
        assert name in result.stderr, f"{name} missing from:\n{result.stderr}"
    assert "99999" in result.stderr and "'LOUD'" in result.stderr  # what was given is shown
    assert 'TROUBLESHOOTING.md, section "Config errors"' in result.stderr
    assert_no_traceback(result.output)
    assert BOT_PASSWORD not in result.output and DIFY_KEY not in result.output


async def test_doctor_with_invalid_config_fails_the_config_line_and_skips_the_rest(
    workdir: Path,
) -> None:
    result = await run(*main_py("doctor"), env=clean_env(**BROKEN), cwd=workdir)

    assert result.code == 2, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("✗ config valid: 5 problem(s)"), result.stdout
    assert '"Config errors"' in lines[0]
    for name in BROKEN_NAMES:
        assert any(line.strip().startswith(f"- {name}") for line in lines), name
    skipped = [line for line in lines if line.startswith("– ")]
    assert len(skipped) == 5, result.stdout
    assert_no_traceback(result.output)
    assert BOT_PASSWORD not in result.output and DIFY_KEY not in result.output


async def test_check_config_reads_dotenv_and_masks_secrets(workdir: Path) -> None:
    (workdir / ".env").write_text(
        f"AIM_USERNAME=Dot Env Bot\nAIM_PASSWORD={BOT_PASSWORD}\nDIFY_API_KEY={DIFY_KEY}\n"
        "AIM_PORT=5191\n"
    )
    # The environment wins over .env (python-dotenv convention).
    result = await run(*main_py("--check-config"), env=clean_env(AIM_PORT="5200"), cwd=workdir)

    assert result.code == 0, result.output
    assert result.stdout.splitlines()[0] == "✓ config valid"
    assert "  AIM_USERNAME=Dot Env Bot" in result.stdout
    assert "  AIM_PORT=5200" in result.stdout
    assert "  AIM_PASSWORD=********" in result.stdout
    assert "  DIFY_API_KEY=********" in result.stdout
    assert BOT_PASSWORD not in result.output and DIFY_KEY not in result.output


async def test_check_config_uses_the_given_env_file(workdir: Path) -> None:
    env_file = workdir / "bots" / "alice.env"
    env_file.parent.mkdir()
    env_file.write_text(f"AIM_USERNAME=alice\nAIM_PASSWORD={BOT_PASSWORD}\nDIFY_API_KEY=change\n")
    (workdir / ".env").write_text("AIM_USERNAME=not-this-one\n")

    result = await run(
        *main_py("--check-config", "--env-file", str(env_file)), env=clean_env(), cwd=workdir
    )

    assert result.code == 0, result.output
    assert "  AIM_USERNAME=alice" in result.stdout


async def test_misused_options_are_usage_errors(workdir: Path) -> None:
    result = await run(*main_py("--aim-port", "5190"), env=clean_env(), cwd=workdir)

    assert result.code == 2
    assert "--aim-port only applies to --demo" in result.stderr
    assert_no_traceback(result.output)


# --- issue 13 item 12: credentials in DIFY_API_URL are a secret ----------------------------------

URL_PASSWORD = "Pr0xyPa55-wordXYZ"


async def test_credentials_in_the_dify_url_are_refused_and_never_printed(workdir: Path) -> None:
    url = f"https://proxyuser:{URL_PASSWORD}@dify.example.com/v1"
    for args in (("--check-config",), ("doctor",), ()):
        result = await run(*main_py(*args), env=clean_env(DIFY_API_URL=url), cwd=workdir)
        assert result.code == 2, result.output
        assert URL_PASSWORD not in result.output and "proxyuser" not in result.output
        assert "DIFY_API_URL" in result.output and "********@dify.example.com" in result.output
        assert "credentials in the URL cannot be used" in result.output
        assert_no_traceback(result.output)

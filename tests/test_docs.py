"""Every code block in README.md and docs/ runs, and the site builds with `mkdocs build --strict`.

Each page runs in a workspace of its own (a temporary folder holding the sample data a reader
would have made with `fastload sample`, and `examples/`), as a reader would run it: its Python
blocks in order in one interpreter (a block may use what an earlier block of the page made), its
bash blocks line by line in bash, with this environment's `fastload`, `python` and `torchrun`
first on PATH. `pip install` lines are not run (they would reinstall this environment): each is
checked instead, every extra it names must be one pyproject.toml defines. The two set-up commands
(`<!-- main-command -->`, `<!-- test-command -->`) are what `.ci/run` runs. S3 examples talk to a
moto server on 127.0.0.1 through the variables s3fs reads (`AWS_ENDPOINT_URL`, ...), which is how
a reader points them at MinIO.
"""

import importlib.util
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_BY_CI = ("<!-- main-command -->", "<!-- test-command -->")
NOT_CODE = {"text"}  # diagrams and printed output


def blocks(page):
    """(line, language, code, marker) of every fenced block; marker: the HTML comment just above."""
    out, lines = [], page.read_text().split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)```(\S*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = len(m.group(1)), m.group(2), i
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        code = "\n".join(line[indent:] for line in lines[i + 1:end])
        above = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        out.append((start + 1, lang, code, above if above.startswith("<!--") else ""))
        i = end + 1
    return out


def page_id(page):
    return str(page.relative_to(ROOT))


def test_every_block_says_its_language():
    for page in PAGES:
        for line, lang, _, _ in blocks(page):
            assert lang in {"python", "bash"} | NOT_CODE, \
                f"{page_id(page)}:{line}: a block in '{lang or 'no language'}'; use python, bash or text"


def test_ci_runs_the_two_set_up_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = {marker: code for _, _, code, marker in blocks(ROOT / "README.md") if marker}
    for marker in RUN_BY_CI:
        assert marker in readme, f"README.md has no block under {marker}"
        assert marker in ci, f".ci/run does not run the README's block under {marker}"


def test_readme_links_lead_to_files():
    text = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not re.match(r"[a-z]+://", target):
            assert (ROOT / target).exists(), f"README.md links to {target}, which does not exist"


def test_the_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="pip install '.[docs]' to build the site")
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                          str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert out.returncode == 0, out.stderr[-4000:]
    assert (tmp_path / "site" / "index.html").exists()


# ---- running the blocks -------------------------------------------------------------------------

def check_pip(line, page, lineno):
    """A `pip install` line of the docs: what it installs must exist here."""
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
                 ["optional-dependencies"])
    args = [a for a in shlex.split(line.split("#")[0])[2:] if not a.startswith("-")]
    assert args, f"{page}:{lineno}: `{line}` installs nothing"
    for arg in args:
        m = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", arg)
        assert m, f"{page}:{lineno}: `{line}`: {arg!r} is not this project (. or .[extras])"
        for extra in filter(None, (m.group(1) or "").split(",")):
            assert extra in extras, f"{page}:{lineno}: `{line}`: no extra named {extra!r}"


@pytest.fixture(scope="module")
def sample_data(tmp_path_factory):
    """What README.md's `fastload sample` lines make, made once."""
    from fastload.tools.synthetic import make_image_folder

    root = tmp_path_factory.mktemp("data")
    make_image_folder(root / "train", 600, classes=6)
    make_image_folder(root / "val", 120, classes=6, seed=1)
    return root


@pytest.fixture(scope="module")
def s3_env():
    """A moto S3 server with an empty bucket `bucket`, and the variables that point s3fs at it."""
    moto_server = pytest.importorskip("moto.server", reason="pip install '.[test]'")
    import boto3

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing"
                 ).create_bucket(Bucket="bucket")
    yield env
    server.stop()


DRIVER = '''
import subprocess, sys
if __name__ == "__main__":   # workers may start by importing this script
    namespace = {"__name__": "__main__"}
    for path in sys.argv[1:]:
        print(f"--- {path}", flush=True)
        if path.endswith(".sh"):
            if subprocess.run(["bash", "-euo", "pipefail", path]).returncode:
                sys.exit(f"the bash block {path} failed")
        else:
            exec(compile(open(path).read(), path, "exec"), namespace)
'''


def missing_requirements(marker):
    """The modules a `<!-- requires: a b -->` block needs that this environment lacks."""
    m = re.fullmatch(r"<!-- requires: ([\w. ]+) -->", marker)
    return [n for n in (m.group(1).split() if m else []) if importlib.util.find_spec(n) is None]


def run_page(page, workspace, env):
    """Runs the page's blocks in order in one interpreter (bash blocks in bash, from it);
    returns the blocks left out for want of a module (the interop venv runs those)."""
    name, scripts, left_out = page_id(page), [], []
    for lineno, lang, code, marker in blocks(page):
        if lang in NOT_CODE or marker in RUN_BY_CI:
            continue
        if missing_requirements(marker):
            left_out.append(f"{name}:{lineno} needs {' '.join(missing_requirements(marker))}")
            continue
        if lang == "bash":
            lines = [ln for ln in code.split("\n") if ln.strip() and not ln.startswith("#")]
            for ln in lines:
                if ln.startswith("pip "):
                    check_pip(ln, name, lineno)
            code = "\n".join(ln for ln in lines if not ln.startswith("pip "))
            if not code:
                continue
        script = workspace / f"{name.replace('/', '_')}_line{lineno}.{'sh' if lang == 'bash' else 'py'}"
        script.write_text(code + "\n")
        scripts.append(str(script))
    out = subprocess.run([sys.executable, str(workspace / "driver.py"), *scripts], cwd=workspace,
                         env=env, capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, f"{name}: a block failed (the last '---' line names it):\n" \
                                f"{out.stdout[-4000:]}\n{out.stderr[-6000:]}"
    return left_out


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_the_pages_code_runs(page, tmp_path, sample_data, request):
    s3_env = request.getfixturevalue("s3_env") if "s3://" in page.read_text() else {}
    work = tmp_path / "work"
    work.mkdir()
    (work / "driver.py").write_text(DRIVER)
    os.symlink(ROOT / "examples", work / "examples")
    if page.name != "README.md":  # the README makes its own data with `fastload sample`
        shutil.copytree(sample_data, work / "data", symlinks=True)
    env = {**os.environ, **s3_env, "GLOO_SOCKET_IFNAME": "lo",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    left_out = run_page(page, work, env)
    if left_out:  # run where the module is: .ci/run's interop venv has torchvision and timm
        pytest.skip("; ".join(left_out))


def test_the_dotted_names_the_pages_give_exist():
    """`fastload.tools.bench.measure` in a page is importable as written (names move)."""
    import importlib

    for page in PAGES:
        for name in sorted(set(re.findall(r"\bfastload(?:\.\w+)+\b(?!/)", page.read_text()))):
            parts, found = name.split("."), None
            for k in range(len(parts), 0, -1):
                try:
                    found = importlib.import_module(".".join(parts[:k]))
                except ImportError:
                    continue
                for attr in parts[k:]:
                    found = getattr(found, attr, None)
                break
            assert found is not None, f"{page_id(page)} names {name}, which does not exist"

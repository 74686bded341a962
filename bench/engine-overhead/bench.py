"""Engine-overhead benchmark: the same layered DAG of trivial command stages in yiflow, Snakemake, DVC and
a plain bash script, timed on a first full run, a no-op rerun and a rerun after one middle-layer stage's
command changed. Started by run.sh, which installs the peers and builds yiflow; see README.md beside it.

Every tool runs exactly the same shell commands: stage `lLcC` (layer L, column C) writes
`{ echo lLcC; cat <its predecessors' outputs>; } | cksum` into a small file, so each output depends on
everything upstream and a changed stage changes its dependents' inputs.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

WIDTH = 10


@dataclass
class Stage:
    name: str
    layer: int
    inputs: list = field(default_factory=list)


def make_dag(n, fan_in):
    """N stages in layers of WIDTH; a stage reads `fan_in` outputs of the layer before (its own column and
    the next ones, wrapping round)."""
    if n % WIDTH:
        sys.exit(f"error: N={n} is not a multiple of the width {WIDTH}")
    stages = []
    for layer in range(n // WIDTH):
        for col in range(WIDTH):
            inputs = []
            if layer > 0:
                inputs = [f"l{layer - 1}c{(col + k) % WIDTH}" for k in range(fan_in)]
            stages.append(Stage(f"l{layer}c{col}", layer, inputs))
    return stages


def middle_stage(stages):
    """The first stage of the middle layer: the one whose command the third measurement changes."""
    layers = stages[-1].layer + 1
    return f"l{layers // 2}c0"


def shell(stage, changed, path_of, out):
    """The stage's command; `path_of(name)` is where a tool keeps a stage's output."""
    label = stage.name + (" changed" if stage.name == changed else "")
    if not stage.inputs:
        return f"echo {label} | cksum > {out}"
    cats = " ".join(path_of(i) for i in stage.inputs)
    return f"{{ echo {label}; cat {cats}; }} | cksum > {out}"


def out_file(name):
    return f"out/{name}.txt"


# --- the four renderings of the DAG ------------------------------------------------------------------


def write_yiflow(folder, stages, changed):
    lines = ['recipe bench { workspace ".yiflow"; seed 1 }']
    for s in stages:
        cmd = shell(s, changed, lambda i: f"$YIFLOW_IN_{i}/out.txt", "$YIFLOW_OUT/out.txt")
        inputs = f"input {' '.join(s.inputs)}; " if s.inputs else ""
        lines.append(f"stage {s.name} kind=command {{ {inputs}run {json.dumps(cmd)} }}")
    write(folder, "recipe.kdl", "\n".join(lines) + "\n")


def write_snakefile(folder, stages, changed):
    last = [s for s in stages if s.layer == stages[-1].layer]
    parts = ["rule all:\n    input: " + ", ".join(json.dumps(out_file(s.name)) for s in last) + "\n"]
    for s in stages:
        # `{input}`/`{output}` would reorder nothing here, but spelling the paths out keeps the command
        # byte-identical to the other tools'; braces of the shell group are doubled for Snakemake's format.
        cmd = shell(s, changed, out_file, out_file(s.name)).replace("{", "{{").replace("}", "}}")
        inputs = ""
        if s.inputs:
            inputs = "    input: " + ", ".join(json.dumps(out_file(i)) for i in s.inputs) + "\n"
        parts.append(
            f"rule {s.name}:\n{inputs}    output: {json.dumps(out_file(s.name))}\n"
            f"    shell: {json.dumps(cmd)}\n"
        )
    write(folder, "Snakefile", "\n".join(parts))


def write_dvc(folder, stages, changed):
    doc = {"stages": {}}
    for s in stages:
        entry = {"cmd": shell(s, changed, out_file, out_file(s.name))}
        if s.inputs:
            entry["deps"] = [out_file(i) for i in s.inputs]
        entry["outs"] = [out_file(s.name)]
        doc["stages"][s.name] = entry
    # JSON is YAML.
    write(folder, "dvc.yaml", json.dumps(doc, indent=1) + "\n")


def write_bash(folder, stages, changed):
    lines = ["set -e", "mkdir -p out"]
    lines += [shell(s, changed, out_file, out_file(s.name)) for s in stages]
    write(folder, "run.sh", "\n".join(lines) + "\n")


def write(folder, name, text):
    with open(os.path.join(folder, name), "w") as f:
        f.write(text)


# --- running and timing ------------------------------------------------------------------------------


class ToolFailed(Exception):
    """A tool's run failed or computed something else than bash: its row says so, the bench goes on."""


@dataclass
class Timed:
    seconds: float
    timed_out: bool
    ok: bool
    output: str


def timed(cmd, cwd, timeout, env, log):
    """Runs `cmd` in `cwd`, output to the file `log`; kills its whole process group at `timeout`."""
    with open(log, "w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            timed_out = True
        seconds = time.perf_counter() - start
    with open(log) as f:
        text = f.read()
    return Timed(seconds, timed_out, not timed_out and proc.returncode == 0, text)


class Tool:
    """One tool on one DAG: `prepare` writes its files, `run` times one invocation."""

    name = ""
    caches = True

    def __init__(self, args, folder, stages):
        self.args, self.folder, self.stages = args, folder, stages
        os.makedirs(folder)

    def env(self):
        env = dict(os.environ)
        env["PATH"] = os.path.join(self.args.venv, "bin") + os.pathsep + env["PATH"]
        env.pop("RUST_LOG", None)
        return env

    def render(self, changed):
        raise NotImplementedError

    def command(self):
        raise NotImplementedError

    def ran(self, output):
        """How many stages an invocation ran, read from its output (None when it does not say)."""
        return None

    def output_of(self, name):
        with open(os.path.join(self.folder, out_file(name))) as f:
            return f.read()

    def finish(self, timeout):
        """Completes a first run that timed out, so that the reruns can be measured (not counted)."""
        return self.run("finish", timeout)

    def run(self, what, timeout):
        return self.run_command(self.command(), what, timeout)

    def run_command(self, command, what, timeout):
        log = os.path.join(self.folder, f"{what}.log")
        result = timed(command, self.folder, timeout, self.env(), log)
        if not result.ok and not result.timed_out:
            tail = "\n".join(result.output.splitlines()[-15:])
            raise ToolFailed(f"{self.name} failed on its {what} run in {self.folder}:\n{tail}")
        return result


class Yiflow(Tool):
    name = "yiflow"

    def render(self, changed):
        write_yiflow(self.folder, self.stages, changed)

    def env(self):
        env = super().env()
        # The no-op receipt lives in the user's cache; keep it in the temporary folder with the rest.
        env["XDG_CACHE_HOME"] = os.path.join(self.folder, "cache")
        return env

    def command(self):
        return [self.args.yiflow, "run", "recipe.kdl", "-j", str(self.args.jobs)]

    def ran(self, output):
        m = re.search(r"(\d+) ran, (\d+) cached", output)
        return int(m.group(1)) if m else None

    def output_of(self, name):
        # `yiflow status` gives the stage's artifact hash (a prefix) in its `artifact` column.
        status = subprocess.run(
            [self.args.yiflow, "status", "recipe.kdl"], cwd=self.folder, env=self.env(),
            capture_output=True, text=True, check=True,
        ).stdout
        lines = status.splitlines()
        column = lines[0].split().index("artifact")
        for line in lines[1:]:
            words = line.split()
            if words and words[0] == name:
                artifacts = os.path.join(self.folder, ".yiflow", "artifacts")
                for entry in os.listdir(artifacts):
                    if entry.startswith(words[column]):
                        with open(os.path.join(artifacts, entry, "out.txt")) as f:
                            return f.read()
        raise RuntimeError(f"no artifact of {name} in `yiflow status`:\n{status}")


class YiflowSerial(Yiflow):
    """yiflow one stage at a time, like bash and DVC: the engine's own cost without parallelism."""

    name = "yiflow -j 1"

    def command(self):
        return [self.args.yiflow, "run", "recipe.kdl", "-j", "1"]


class Snakemake(Tool):
    name = "snakemake"

    def render(self, changed):
        write_snakefile(self.folder, self.stages, changed)

    def command(self):
        return ["snakemake", "--cores", str(self.args.jobs), "--snakefile", "Snakefile"]

    def ran(self, output):
        if "Nothing to be done" in output:
            return 0
        return len(re.findall(r"^Finished jobid: \d+ \(Rule: (?!all\))", output, re.M)) or None


class Dvc(Tool):
    name = "dvc"

    def __init__(self, args, folder, stages):
        super().__init__(args, folder, stages)
        env = self.env()
        for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"],
                    ["dvc", "config", "core.analytics", "false"],
                    ["dvc", "config", "core.check_update", "false"]):
            subprocess.run(cmd, cwd=folder, env=env, check=True, capture_output=True)
        os.makedirs(os.path.join(folder, "out"))

    def env(self):
        env = super().env()
        env["DVC_NO_ANALYTICS"] = "1"
        env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "bench"
        env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "bench@localhost"
        return env

    def render(self, changed):
        write_dvc(self.folder, self.stages, changed)

    def finish(self, timeout):
        # `dvc repro` slows down as dvc.lock grows (it rewrites the whole lock file after every stage), so
        # finishing through it can take longer than the bench may. The same state comes faster from the
        # same commands run by bash, then `dvc commit --force` recording every stage's deps, outs and
        # command in dvc.lock and the outputs in DVC's cache: what a finished `dvc repro` leaves.
        # A `dvc repro` killed by the timeout may have left dvc.lock half written; commit writes it anew.
        lock = os.path.join(self.folder, "dvc.lock")
        if os.path.exists(lock):
            os.remove(lock)
        write_bash(self.folder, self.stages, None)
        bash = timed(["bash", "run.sh"], self.folder, timeout, self.env(), os.path.join(self.folder, "bash.log"))
        if not bash.ok:
            return bash
        return self.run_command(["dvc", "commit", "--force"], "finish", timeout)

    def command(self):
        return ["dvc", "repro"]

    def ran(self, output):
        return len(re.findall(r"^Running stage '", output, re.M))


class Bash(Tool):
    name = "bash"
    caches = False

    def render(self, changed):
        write_bash(self.folder, self.stages, changed)

    def command(self):
        return ["bash", "run.sh"]

    def ran(self, output):
        return len(self.stages)


TOOLS = {"yiflow": Yiflow, "yiflow-j1": YiflowSerial, "snakemake": Snakemake, "dvc": Dvc, "bash": Bash}


def measure(tool, timeout, log):
    """First run, no-op rerun and middle-change rerun of one tool; seconds or None (timed out)."""
    changed = middle_stage(tool.stages)
    row = {"first": None, "noop": None, "middle": None, "ran_noop": None, "ran_middle": None}
    tool.render(None)
    first = tool.run("first", timeout)
    log(f"  {tool.name} first: {fmt(first)}")
    row["first"] = None if first.timed_out else first.seconds
    if first.timed_out:
        # Reruns need a finished first run; finish it (untimed, same limit) so that they can be measured.
        finish = tool.finish(timeout)
        log(f"  {tool.name} finishing the first run (not counted): {fmt(finish)}")
        if finish.timed_out:
            return row
    check_outputs(tool)
    if not tool.caches:
        return row
    noop = tool.run("noop", timeout)
    row["noop"] = None if noop.timed_out else noop.seconds
    row["ran_noop"] = tool.ran(noop.output)
    if noop.timed_out and row["ran_noop"] is not None:
        row["ran_noop"] = f"{row['ran_noop']}+"
    log(f"  {tool.name} no-op: {fmt(noop)}, {row['ran_noop']} stages ran")
    tool.render(changed)
    middle = tool.run("middle", timeout)
    row["middle"] = None if middle.timed_out else middle.seconds
    row["ran_middle"] = tool.ran(middle.output)
    if middle.timed_out and row["ran_middle"] is not None:
        row["ran_middle"] = f"{row['ran_middle']}+"  # stopped part way
    log(f"  {tool.name} middle change ({changed}): {fmt(middle)}, {row['ran_middle']} stages ran")
    return row


EXPECTED = {}


def check_outputs(tool):
    """The last stage's output must equal what bash computed: every tool ran the same commands."""
    last = tool.stages[-1].name
    got = tool.output_of(last)
    want = EXPECTED.get((len(tool.stages), last))
    if want is None:
        EXPECTED[(len(tool.stages), last)] = got
    elif got != want:
        raise ToolFailed(f"{tool.name} computed {got!r} for {last}, bash {want!r}")


def fmt(t):
    return f">{t.seconds:.0f} s (timed out)" if t.timed_out else f"{t.seconds:.2f} s"


def cell(seconds, timeout):
    return f">{timeout:g}" if seconds is None else f"{seconds:.2f}"


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--yiflow", required=True)
    p.add_argument("--venv", required=True)
    p.add_argument("--sizes", default="10,100,1000")
    p.add_argument("--tools", default="bash,yiflow,yiflow-j1,snakemake,dvc")
    p.add_argument("--fan-in", type=int, default=2)
    p.add_argument("--timeout", type=float, default=240)
    p.add_argument("--jobs", type=int, default=os.cpu_count())
    p.add_argument("--versions", default="")
    p.add_argument("--out", required=True)
    p.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = p.parse_args()
    args.yiflow = os.path.abspath(args.yiflow)
    args.venv = os.path.abspath(args.venv)
    sizes = [int(x) for x in args.sizes.split(",")]
    tools = args.tools.split(",")
    if "bash" in tools:
        tools = ["bash"] + [t for t in tools if t != "bash"]  # bash first: it defines the expected outputs

    def log(text):
        print(text, file=sys.stderr, flush=True)

    load_before = os.getloadavg()
    started = time.perf_counter()
    root = tempfile.mkdtemp(prefix="yiflow-engine-overhead-")
    results = {}
    failures = []
    try:
        for n in sizes:
            stages = make_dag(n, args.fan_in)
            log(f"N = {n} ({n // WIDTH} layers of {WIDTH}, middle change: {middle_stage(stages)})")
            for name in tools:
                tool = TOOLS[name](args, os.path.join(root, f"{name}-{n}"), stages)
                try:
                    results[(name, n)] = measure(tool, args.timeout, log)
                except ToolFailed as e:
                    log(f"error: {e}")
                    failures.append(f"{name} at N = {n}")
    finally:
        if args.keep:
            log(f"temporary folders kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    load_after = os.getloadavg()
    total = time.perf_counter() - started

    out = []
    out.append(f"Engine overhead: layered DAG of N trivial command stages, width {WIDTH}, each stage reading "
               f"{args.fan_in} outputs of the layer before. Seconds, wall clock, one run each.\n")
    out.append(f"Machine: {os.cpu_count()} cores; yiflow `-j {args.jobs}`, Snakemake `--cores {args.jobs}`, "
               f"DVC `dvc repro` (sequential), bash runs the commands in order. {args.versions}\n")
    out.append(f"Load average (1, 5, 15 min) before: {fmt_load(load_before)}; after: {fmt_load(load_after)}; "
               f"whole bench {total:.0f} s.\n")
    out.append("| N | tool | first run | no-op rerun | middle-change rerun | stages rerun (no-op / middle) |")
    out.append("|---:|---|---:|---:|---:|---:|")
    for n in sizes:
        for name in tools:
            r = results.get((name, n))
            if r is None:
                out.append(f"| {n} | {TOOLS[name].name} | failed | failed | failed | see the log above |")
                continue
            if name == "bash":
                out.append(f"| {n} | bash (floor) | {cell(r['first'], args.timeout)} | — | — | no cache |")
                continue
            first_done = r["first"] is not None or r["noop"] is not None
            noop = cell(r["noop"], args.timeout) if first_done else "—"
            middle = cell(r["middle"], args.timeout) if first_done else "—"
            ran = f"{dash(r['ran_noop'])} / {dash(r['ran_middle'])}"
            out.append(f"| {n} | {TOOLS[name].name} | {cell(r['first'], args.timeout)} | {noop} | {middle} | {ran} |")
    out.append("")
    out += targets(results, max(sizes), tools, args.timeout)
    text = "\n".join(out) + "\n"
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    if failures:
        sys.exit(f"error: failed: {', '.join(failures)} (rows marked `failed`)")


def fmt_load(load):
    return ", ".join(f"{x:.2f}" for x in load)


def dash(x):
    return "—" if x is None else str(x)


def targets(results, n, tools, timeout):
    """The issue's targets at the largest N, each with the measured ratio and PASS/FAIL."""
    def get(tool, what):
        if (tool, n) not in results:
            return "missing"
        return results[(tool, n)][what]

    y = lambda what: get("yiflow", what)  # noqa: E731
    checks = [
        ("no-op rerun <= 1/20 of Snakemake's", y("noop"), get("snakemake", "noop"), 1 / 20),
        ("no-op rerun <= 1/20 of DVC's", y("noop"), get("dvc", "noop"), 1 / 20),
        ("first run <= 1/2 of Snakemake's", y("first"), get("snakemake", "first"), 1 / 2),
        ("first run <= 2x bash's", y("first"), get("bash", "first"), 2),
        ("middle-change rerun <= 1/4 of Snakemake's", y("middle"), get("snakemake", "middle"), 1 / 4),
    ]
    lines = [f"Targets at N = {n} (ratio = yiflow / peer):\n", "| target | yiflow | peer | ratio | limit | result |",
             "|---|---:|---:|---:|---:|---|"]
    for label, mine, theirs, limit in checks:
        if "missing" in (mine, theirs):
            lines.append(f"| {label} | — | — | — | {limit:g} | not measured |")
        elif mine is None:
            lines.append(f"| {label} | >{timeout:g} | {cell(theirs, timeout)} | — | {limit:g} | FAIL |")
        elif theirs is None:
            # The peer timed out: its true time is above the limit, so the ratio is below mine / timeout.
            ratio = mine / timeout
            verdict = "PASS" if ratio <= limit else "unknown (peer timed out)"
            lines.append(f"| {label} | {mine:.2f} | >{timeout:g} | <{ratio:.3f} | {limit:g} | {verdict} |")
        else:
            ratio = mine / theirs
            verdict = "PASS" if ratio <= limit else "FAIL"
            lines.append(f"| {label} | {mine:.2f} | {theirs:.2f} | {ratio:.3f} | {limit:g} | {verdict} |")
    return lines


if __name__ == "__main__":
    main()

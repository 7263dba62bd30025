"""The ``edgeseg`` command's entry point: the environment first, then the CLI.

edgeseg's pre- and post-processing run on PyTorch, whose OpenMP threads spin after each
parallel region. Beside ONNX Runtime, OpenVINO or TensorRT in the same process they take the
cores from the engine's threads (on a 2-core machine ONNX Runtime ran 13-27% slower:
benchmarks/RESULTS.md section 19), while PyTorch itself runs slower without the spinning. So a
command that runs an exported model starts with ``OMP_WAIT_POLICY=PASSIVE``; a checkpoint,
training and every other command keep the default. The variable is read once, when PyTorch is
imported, hence here, before anything imports it; a value the user set is kept.
"""

from __future__ import annotations

import os
import sys

INFERENCE_COMMANDS = ("eval", "predict", "autolabel")


def wait_policy(argv: list[str]) -> str | None:
    """The OpenMP wait policy for ``argv`` (without the program name): that of the model's backend
    (runtime.registry.omp_wait_policy) for the commands that run one model, else None."""
    if not argv or argv[0] not in INFERENCE_COMMANDS:
        return None
    model = None
    for k, arg in enumerate(argv):
        if arg == "--model" and k + 1 < len(argv):
            model = argv[k + 1]
        elif arg.startswith("--model="):
            model = arg.split("=", 1)[1]
    from edgeseg.runtime.registry import BACKENDS, omp_wait_policy

    backend = next((b for b in BACKENDS.values() if model and model.lower().endswith(b.suffixes)), None)
    return omp_wait_policy(backend) if backend is not None else None


def main() -> None:
    policy = wait_policy(sys.argv[1:])
    if policy and "OMP_WAIT_POLICY" not in os.environ and "torch" not in sys.modules:
        os.environ["OMP_WAIT_POLICY"] = policy
    from edgeseg.cli import main as cli_main

    cli_main()

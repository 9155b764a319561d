"""prefect-fargate: a Prefect worker on ECS Fargate, one `pulumi up` per stack."""

import sys

# Before any import that needs 3.11 (prefect 3.9.1: Requires-Python >=3.11): one line instead of a traceback.
if sys.version_info < (3, 11):  # noqa: UP036 (ruff assumes 3.11; this line is for the Pythons before it)
    sys.exit(
        f'prefect-fargate needs Python 3.11 to 3.13, not {sys.version.split()[0]}: see README.md, "Prerequisites".'
    )

import pulumi

from components.config import load_config
from components.prefect_worker import PrefectWorker

config = load_config()
worker = PrefectWorker("prefect", config)
for key, value in worker.stack_outputs(config).items():
    pulumi.export(key, value)

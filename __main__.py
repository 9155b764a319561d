"""prefect-fargate: a Prefect worker on ECS Fargate, one `pulumi up` per stack."""

import pulumi

from components.config import load_config
from components.prefect_worker import PrefectWorker

config = load_config()
worker = PrefectWorker("prefect", config)
for key, value in worker.stack_outputs(config).items():
    pulumi.export(key, value)

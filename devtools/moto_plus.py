"""moto_server plus answers to the few read-only calls moto lacks that terraform-provider-aws makes after a
create: `python -m devtools.moto_plus -H 127.0.0.1 -p PORT` (moto_server's own arguments).

Without them the provider fails a resource that moto did create, and every resource that needs it is never
applied. Each answer is named in `ANSWERS` with the resource types it serves (the rehearsal says so on each
such resource it reports created) and logged ("moto_plus answered ...") every time it is used: what they
answer is not checked by the rehearsal.
"""

from __future__ import annotations

import json
import sys

# (service, action) -> (the Terraform types whose create the provider follows with that call, what
# moto_plus answers: so what the rehearsal does not check for them)
ANSWERS = {
    ("application-autoscaling", "ListTagsForResource"): (
        ("aws_appautoscaling_target",),
        "no tags (moto keeps no tags on scalable targets and has no ListTagsForResource for them)",
    ),
}
LOGGED = "moto_plus answered"


def install() -> None:
    """Add each answer to moto's response classes (what moto_server dispatches an action to)."""
    from moto.applicationautoscaling.responses import ApplicationAutoScalingResponse

    def list_tags_for_resource(self: ApplicationAutoScalingResponse) -> str:
        arn = self._get_param("ResourceARN")
        print(f"{LOGGED} application-autoscaling ListTagsForResource {arn}", file=sys.stderr, flush=True)
        return json.dumps({"Tags": {}})

    ApplicationAutoScalingResponse.list_tags_for_resource = list_tags_for_resource  # type: ignore[attr-defined]


if __name__ == "__main__":
    from moto.server import main

    install()
    main()

"""Pulumi's dynamic provider host, started and driven as the engine does it, for the provider tests.

`pulumi up` starts `python -u -m pulumi.dynamic` (pulumi's sdk/python/dist/pulumi-resource-pulumi-python)
in the project directory (`newPlugin(ctx, ctx.Pwd, ...)`, sdk/go/common/resource/plugin), reads the
port it prints, and calls Configure, then Create/Read/Diff/Update/Delete over gRPC with the
`__provider` string from the state in the properties. What the host prints on stderr (the
providers' warnings) the CLI shows.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class ProviderHost:
    """A running `python -m pulumi.dynamic` and a gRPC stub to it."""

    stub: Any
    stderr_path: Path

    @staticmethod
    def _struct(values: dict[str, Any]) -> Any:
        from pulumi.runtime import rpc
        from pulumi.runtime.sync_await import _sync_await

        return _sync_await(rpc.serialize_properties(values, {}))

    @staticmethod
    def _plain(struct: Any) -> dict[str, Any]:
        from pulumi.runtime import rpc

        return dict(rpc.deserialize_properties(struct))

    def create(self, urn: str, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        from pulumi.runtime import proto

        created = self.stub.Create(proto.CreateRequest(urn=urn, properties=self._struct(props)))
        return created.id, self._plain(created.properties)

    def read(self, id_: str, urn: str, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        from pulumi.runtime import proto

        read = self.stub.Read(proto.ReadRequest(id=id_, urn=urn, properties=self._struct(state)))
        return read.id, self._plain(read.properties)

    def diff(self, id_: str, urn: str, state: dict[str, Any], news: dict[str, Any]) -> Any:
        from pulumi.runtime import proto

        return self.stub.Diff(proto.DiffRequest(id=id_, urn=urn, olds=self._struct(state), news=self._struct(news)))

    def changes(self, id_: str, urn: str, state: dict[str, Any], news: dict[str, Any]) -> bool:
        """Whether the host's Diff reports a change (DIFF_SOME) rather than none (DIFF_NONE)."""
        from pulumi.runtime import proto

        answer = self.diff(id_, urn, state, news).changes
        assert answer in (proto.DiffResponse.DIFF_SOME, proto.DiffResponse.DIFF_NONE), answer
        return bool(answer == proto.DiffResponse.DIFF_SOME)

    def update(self, id_: str, urn: str, state: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        from pulumi.runtime import proto

        request = proto.UpdateRequest(id=id_, urn=urn, olds=self._struct(state), news=self._struct(news))
        return self._plain(self.stub.Update(request).properties)

    def delete(self, id_: str, urn: str, state: dict[str, Any]) -> None:
        from pulumi.runtime import proto

        self.stub.Delete(proto.DeleteRequest(id=id_, urn=urn, properties=self._struct(state)))

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


@contextlib.contextmanager
def provider_host(python: str = sys.executable, cwd: Path = ROOT) -> Iterator[ProviderHost]:
    """The host under `python`, started in `cwd` (the project directory, as the engine does)."""
    import grpc
    from pulumi.runtime import proto
    from pulumi.runtime.proto import provider_pb2_grpc

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    with tempfile.TemporaryDirectory(prefix="provider-host-") as tmp:
        stderr_path = Path(tmp) / "stderr.log"
        with stderr_path.open("wb") as stderr:
            host = subprocess.Popen(
                [python, "-u", "-m", "pulumi.dynamic"], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=stderr
            )
        try:
            line = host.stdout.readline()  # type: ignore[union-attr]
            if not line.strip().isdigit():
                raise RuntimeError(f"the provider host did not start: {stderr_path.read_text()[-3000:]}")
            channel = grpc.insecure_channel(f"127.0.0.1:{int(line)}")
            stub = provider_pb2_grpc.ResourceProviderStub(channel)
            stub.Configure(proto.ConfigureRequest())
            yield ProviderHost(stub, stderr_path)
            channel.close()
        finally:
            host.send_signal(signal.SIGTERM)
            host.wait(timeout=10)

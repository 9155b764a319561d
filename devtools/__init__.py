"""Tools for working on the project without AWS or the Pulumi CLI: the local demo, the config check,
and the local Prefect stack and Pulumi mocks that the tests share with them."""

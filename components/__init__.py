"""Reusable Pulumi components that put a Prefect worker on ECS Fargate."""

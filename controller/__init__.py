"""The stack controller: an AWS Lambda function run every minute (components/stack_controller.py deploys it)."""

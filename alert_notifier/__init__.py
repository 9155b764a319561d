"""The alert notifier: an AWS Lambda function the stack's alarms invoke (components/alert_notifier.py deploys it)."""

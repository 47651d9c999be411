"""The Slack front end: Web API clients, the notifier that keeps lab cards current, and the runners."""

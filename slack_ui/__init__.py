"""The Slack side: Bolt app, listeners and view builders."""

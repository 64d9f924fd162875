"""The cash-flow digest (issue 15): which period (`period`), what FreshBooks says about it (`fetch`),
the figures (`figures`), the Slack message (`message`), when each is due (`schedule`), sending each
scheduled one exactly once (`sender`, the job) and what commands and the App Home do (`service`).
`period`, `figures`, `message` and `schedule` are pure."""

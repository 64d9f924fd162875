"""The cash-flow digest (issue 15): which period (`period`), what FreshBooks says about it (`fetch`),
the figures (`figures`) and the Slack message (`message`). All but `fetch` are pure."""

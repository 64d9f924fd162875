"""Pure value types any layer may use: events, money, rules, clock, settings; imports nothing of ours."""

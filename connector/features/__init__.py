"""One module or folder per thing a person does: rules, audit, home, status, permissions, retention."""

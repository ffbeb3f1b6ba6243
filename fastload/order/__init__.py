"""Which sample goes where and when: sharding (a pure function), rank and world resolution, and
exact evaluation over padded epochs."""

"""Recipe models (pydantic, `extra="forbid"`) and the loader shared by every command."""

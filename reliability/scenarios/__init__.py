"""The scenarios, by name: each `async def (run: RunContext) -> Result`."""

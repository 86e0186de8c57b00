"""The routes of the runtime API, one module per area of docs/http-api.md."""

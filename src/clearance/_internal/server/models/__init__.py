"""The request and response bodies of the runtime API (pydantic), one module per area.

They are the served OpenAPI document (``/openapi.json``): every request body is strict
(unknown members and wrong JSON types are 422, naming the field), and every response
model describes exactly what the route returns, so the schemathesis run in the test
suite can hold the server to it.
"""

"""The HTTP edge: the FastAPI app and everything only it needs.

`app` (routes: /ask, /ask/stream, /readyz, sources), `models` (the wire format, pydantic, built
from qa.types), `limits` (request sizes and rates), `streaming` (server-sent events), `state`
(the loaded pipeline a request works on), `openai_compat` + `openai_models` (the /v1 chat API),
`web` (the chat page), `mcp_server` (`qa mcp`) and `run` (uvicorn). Stages below never import it.
"""

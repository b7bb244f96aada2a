"""The terminal page, the websocket route and the SSH bridge."""

"""The routes of :func:`siamtext.serve.create_app`, one module per resource."""

from __future__ import annotations

from siamtext.serve.routes import duplicates, embeddings, health, intents

#: Included in this order.
MODULES = (health, embeddings, duplicates, intents)

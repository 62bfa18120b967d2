"""Serving: faces in a photo -> every model's answer (:mod:`~fermm.serve.predict`), fusion with a sentence,
explanations, and the Gradio app (:mod:`~fermm.serve.ui`).

No telemetry: Gradio's analytics and the Hub client's telemetry are switched off here, before any module of
this package imports gradio.
"""
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_RUN_HISTORY", "False")  # no copies of requests kept, not even in the browser
# Gradio's queue rebuilds a pandas summary of its last 10,000 events after every request, for a monitoring page
# this app does not enable: 2-6 ms of CPU per request (its summary timed on 100-10,000 events). Keep fewer,
# summarise never.
os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "1000")
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", str(10**9))

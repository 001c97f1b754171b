"""The one request path. Every request flows once through:

parse → authenticate (gateway/app.py) → plan (plan.py: route once, resolve the strategy, size the
reservation) → admit (RPM/TPM) → execute (plain.py or strategy.py, which never import each
other; every upstream call through calls.py under a hold from metered.py or the strategy's
Budget in generator.py) → respond (respond.py: headers, `ttc`, SSE) → observe (finish.py,
observe.py: settle, true up, hand the record to every observer).
"""

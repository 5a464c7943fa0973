"""Analytics: bots, signals and trades as pandas DataFrames, and what is computed from them.

``service`` (:class:`BotDataService`: one SQL statement per call, ``queries``; DataFrames,
``frames``), ``performance`` and ``risk`` (pure metrics), ``report`` (terminal, CSV, HTML),
``payloads`` (the JSON of ``/api/bots`` and ``/api/performance``), ``sync_bridge``
(blocking twins of the async calls, for notebooks and Dash callbacks).
"""

"""A local emulator of the Rinha de Backend 2025 payment processors (``rinha processors``).

It reproduces, as a client observes it, what ``spec/processor-api.md`` describes: the request
pipeline in its order (routing, rate limiters, body binding, delay, failure mode, insert), the
System.Text.Json and ASP.NET binding rules, Npgsql's storage of amounts and timestamps, the
summary's exact decimal arithmetic, both rate limiters with their timing, and the admin API.

Modules: :mod:`.binding` (parsing rules, pure), :mod:`.ledger` (stored payments and summary,
pure), :mod:`.limiters` (concurrency and fixed-window limiters, trio), :mod:`.delay` (the delay
filter's shared timer, trio), :mod:`.app` (one processor: state, routes, replies), :mod:`.run`
(serving one or more on listeners).

One extension: ``GET /admin/in-flight`` (token required) answers ``{"payments": N}``, the
``POST /payments`` being answered right now. A payment held in its delay is stored even after a
purge made meanwhile (as in the real processor), so a test that purges between scenarios first
waits for N = 0.

Known deviations, all from serving it with the project's lean HTTP server and no database:

* A request queued in a limiter whose client disconnects is not dropped: the server does not
  watch a connection while its handler runs, so the request keeps its queue place and runs.
* Chunked request bodies are refused with 411 (the server frames bodies by Content-Length).
* Replies are framed by Content-Length where Kestrel often chunks them (JSON, the 429 text);
  there is no ``Date`` header. Clients see the same status, headers and bodies.
* A header sent twice arrives joined by ", ", so a token that itself contains ", " cannot be
  told from the header sent twice.
* ``from``/``to`` of the summary accept the ISO-like forms and ``M/d/yyyy`` of
  ``DateTime.TryParse``, not its rarer ones (month names, AM/PM, a time alone).
* The 422 carries a stand-in for Npgsql's exception text (same prefix and shape).
* No database, so no "other DB error" 500 with a JSON body; a summary whose total overflows a
  .NET ``decimal`` gets an empty 500.
"""

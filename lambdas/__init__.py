"""One thin entry module per Lambda function: event in, core call, response out.

Handlers (stacks/control_plane.py names them): `lambdas.api.handler` (HTTP API),
`lambdas.release.handler` (the job table's stream), `lambdas.scaler.handler` and
`lambdas.reconciler.handler` (EventBridge schedules). Shared wiring is in
`hyperbatch.wiring.lambdas`, built once per execution environment.
"""

"""The SDN controller plugin: plans -> OpenFlow 1.3 meters and flows, counters -> telemetry.

Pure logic (no os-ken): :mod:`.flows` (policy + plan -> tables, diffs),
:mod:`.counters` (counters -> rates), :mod:`.core` (which plan runs, per-switch
state), :mod:`.fake_table` (a fake switch for tests). Adapters: :mod:`.ofmsgs`
(plain operations -> os-ken / Ryu parser messages), :mod:`.app` (the os-ken app),
:mod:`.service_link` (the gRPC stream to the sliceai service), :mod:`.settings` (what the
app runs with), :mod:`.commands` (``sliceai controller``'s options) and :mod:`.launcher`
(runs the app under os-ken).
"""

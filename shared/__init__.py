"""agentpack identity: code shared by every Cloud Function.

One concept per module. Domain modules (agents, devices, settings, audit) know
nothing of Flask; only ``http`` does. Only ``store`` touches Firestore.
"""

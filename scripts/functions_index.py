from agentpack.functions_index import ROOT as ROOT, Function as Function, all_functions as all_functions  # noqa: I001

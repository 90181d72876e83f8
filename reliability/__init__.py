"""The reliability, load and security suite: `python -m reliability [SCENARIO ...] [--short]`.

Each scenario builds a real pipeline (sandbox store and APSIS account in this process, the
receiver and workers as real `shopsync` processes on a private Redis), applies load, faults or
bad input, then compares APSIS with what the store says it must hold, customer by customer.
"""

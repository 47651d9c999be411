"""Building, destroying and checking one lab: the remote work behind the lifecycle.

    dag          run steps as a DAG: each starts once its prerequisites are done, failures stop the rest
    steps        the build's steps (names stored in the database), each an async function of a LabContext
    context      LabContext: the one lab a step works on, its platform clients and its recorded outputs
    connections  the lab's SSH sessions (VM1 direct, VM2 through VM1) and the tunnel to the nested ZStack
    health       the health checks of a ready lab
    pipeline     LabPipeline: build (the DAG), destroy and health for the engine
"""

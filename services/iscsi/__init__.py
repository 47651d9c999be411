"""The iSCSI target on VM1 that exports the lab's data disk to VM2 (the nested ZStack's SharedBlock storage).

``backends.backend_for(profile.iscsi.backend, run)`` gives the backend for the lab profile (``tgt.TgtBackend``
or ``targetcli.TargetcliBackend``, both ``base.IscsiBackend``); ``disk.find_data_disk`` and
``initiator.read_initiator_name`` supply the device and the ACL's initiator; ``naming.target_iqn`` names the
target. The package re-exports nothing: import from the modules.
"""

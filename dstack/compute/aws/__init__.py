"""AWS compute through Pulumi: helpers of ``dstack.compute.aws.compute``, split by concern.

- ``config``: the ``compute`` section of the config file (region, AMI, volume, limits…);
- ``catalog``: the instance catalog shipped in ``dstack/data/instances.json`` and selection;
- ``scope``: the keys of the store a run's runner may touch (its IAM policy's input);
- ``userdata``: the boot script that installs this dstack and starts the runner;
- ``runargs``: a run and its jobs as the run stack's arguments;
- ``wheel``: this dstack as a wheel, stored in the bucket for instances to install;
- ``plan``: the run stack rendered offline through Pulumi's mock runtime;
- ``driver``: the Pulumi Automation API (preview → up → destroy) and the engine check;
- ``ec2``: the few boto3 EC2 calls (instance liveness, terminate, tagged-resource search);
- ``prune``: finding and destroying stacks and resources whose runs are finished or gone;
- ``bootstrap``: creating or adopting the bootstrap stack for ``dstack config``;
- ``handrun``: a stack's arguments from Pulumi config, for ``stacks/`` previewed by hand.

Nothing here imports boto3 or pulumi at module import time.
"""

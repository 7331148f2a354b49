"""dstack's Pulumi programs: the bootstrap stack and the run stack (see ``Pulumi.yaml``)."""

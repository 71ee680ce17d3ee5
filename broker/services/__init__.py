"""Services: the base class, the store, the invoker pipeline."""

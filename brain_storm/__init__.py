"""brain_storm saver: moves parser results from a message queue into a database.

The package has three layers, each in its own folder:

- :mod:`brain_storm.databases` holds one driver per URL scheme and knows nothing
  of queues or Kubernetes;
- :mod:`brain_storm.saver` normalises messages, calls a driver, and runs the
  RabbitMQ consumer (``run-saver``);
- :mod:`brain_storm.operator` reconciles ``SaverBinding`` resources into saver
  Deployments.

Messages, errors and URL helpers shared by all three live at the top level.
"""

__version__ = "0.1.0"

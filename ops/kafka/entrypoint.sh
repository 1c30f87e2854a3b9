#!/bin/bash
# Writes server.properties from the environment with the apache/kafka image's rule (every
# "KAFKA_" removed, lower case, "_" -> ".", then "..." -> "-" and ".." -> "_"), formats the log
# directory for CLUSTER_ID on the first start, then runs the broker in the foreground.
set -euo pipefail
conf=/opt/kafka/config/server.properties
libs='/opt/kafka/libs/*'
: "${CLUSTER_ID:?set CLUSTER_ID: the KRaft cluster id every node of the cluster shares}"
: "${KAFKA_NODE_ID:?set KAFKA_NODE_ID: the id of this node in KAFKA_CONTROLLER_QUORUM_VOTERS}"
not_properties=" KAFKA_HEAP_OPTS KAFKA_OPTS KAFKA_VERSION "
{
  echo "# written by ops/kafka/entrypoint.sh from the KAFKA_* environment"
  for var in $(compgen -e | sort); do
    [[ $var == KAFKA_* && $not_properties != *" $var "* ]] || continue
    name=${var//KAFKA_/}
    name=${name,,}
    name=${name//_/.}
    name=${name//.../-}
    name=${name//../_}
    printf '%s=%s\n' "$name" "${!var}"
  done
} > "$conf"
java=(java ${KAFKA_HEAP_OPTS} -XX:+UseG1GC -Djava.awt.headless=true
      -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties ${KAFKA_OPTS:-} -cp "$libs")
data=${KAFKA_LOG_DIRS:-/var/lib/kafka/data}
if [ ! -e "$data/meta.properties" ]; then
  echo "entrypoint: formatting $data for cluster $CLUSTER_ID, node $KAFKA_NODE_ID"
  "${java[@]}" kafka.tools.StorageTool format --ignore-formatted -t "$CLUSTER_ID" -c "$conf"
fi
exec "${java[@]}" kafka.Kafka "$conf"

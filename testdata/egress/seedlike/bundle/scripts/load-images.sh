#!/bin/sh
# Push all images to your registry: ./load-images.sh --registry <your-registry>
set -eu
REGISTRY="$1"
docker load -i images/all-images.tar.gz

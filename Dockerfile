FROM python:3.12-slim
WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir '.[binary]'
ENV PYTHONUNBUFFERED=1
ENTRYPOINT ["pgsched"]
